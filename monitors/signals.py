from django.dispatch import Signal

# Sent inside the transaction that records a batch of results, so that what reacts to them (alert
# lifecycle, notification outbox) is committed together with them. Arguments: connection, results.
results_recorded = Signal()
