from django.dispatch import Signal

# Sent inside the transaction that records a batch of results, so that what reacts to them (alert
# lifecycle, notification outbox) is committed together with them. Arguments: connection, results.
results_recorded = Signal()

# Sent when a table's baseline is restarted (rebaseline): the open volume alert resolves. Argument: table.
table_rebaselined = Signal()
