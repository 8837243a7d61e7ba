"""Request body parsers for every Pulse API view (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

DRF's parsers let through bodies that end in a 500 further down: a lone surrogate (`"\\udfff"`) cannot be
stored or rendered, `"[" * 100000` overflows the recursion limit, `1e400` is infinity, a 5000-digit integer
exceeds Python's conversion limit. These refuse them with a ParseError (400) naming the problem.

Kept apart from common.api: DRF imports the parser classes while defining APIView, so this module
must not import DRF's views.
"""

import json
import math

from rest_framework import exceptions, parsers

MAX_JSON_DEPTH = 32
MAX_JSON_NUMBER_LENGTH = 100


def json_body_parse(*, text: str) -> object:
    """Parse a request body, or raise ValueError naming what is wrong with it (never repeating it).

    Refused beyond plain JSON syntax: nesting deeper than MAX_JSON_DEPTH arrays/objects, NaN and Infinity,
    numbers written with more than MAX_JSON_NUMBER_LENGTH characters or too large for a float (1e400),
    and strings or keys holding a lone UTF-16 surrogate (`"\\udfff"`), which no database or response
    can encode. Every view can then rely on the data being finite, shallow and encodable.
    """
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    _check_depth_and_text(data)
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_JSON_NUMBER_LENGTH:
        raise ValueError(f"a number has more than {MAX_JSON_NUMBER_LENGTH} digits")
    return int(literal)


def _finite_float(literal: str) -> float:
    if len(literal) > MAX_JSON_NUMBER_LENGTH:
        raise ValueError(f"a number has more than {MAX_JSON_NUMBER_LENGTH} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("a number is too large (beyond the range of a double)")
    return value


_LONE_SURROGATE = "holds a lone surrogate (an unpaired \\ud800-\\udfff escape); send valid Unicode"


def _check_depth_and_text(data: object) -> None:
    pending = [(data, 0, "")]
    while pending:
        value, depth, where = pending.pop()
        if isinstance(value, str):
            if not text_encodable(value):
                raise ValueError(f"{_place(where)} {_LONE_SURROGATE}")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth == MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, list):
            pending.extend((item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value))
            continue
        for key, item in value.items():
            if not text_encodable(key):
                raise ValueError(f"a key in {_place(where)} {_LONE_SURROGATE}")
            pending.append((item, depth + 1, f"{where}.{key}" if where else key))


def text_encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _place(where: str) -> str:
    if not where:
        return "the body"
    return f"`{where}`" if len(where) <= 100 else f"`{where[:100]}…`"


class JSONBodyParser(parsers.JSONParser):
    """DRF's JSON parser with Pulse's limits (`json_body_parse`). Every problem is a ParseError (400).

    DRF hands it the body through `request.body`, which has already enforced DATA_UPLOAD_MAX_MEMORY_SIZE.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return json_body_parse(text=stream.read().decode(encoding))
        except UnicodeDecodeError:
            raise exceptions.ParseError(f"the body is not valid {encoding}") from None
        except ValueError as exc:
            raise exceptions.ParseError(str(exc)) from None


class _EncodableFormMixin:
    """A form body declaring a charset such as utf-7 or unicode_escape can decode to lone surrogates."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        fields = parsed.data if isinstance(parsed, parsers.DataAndFiles) else parsed
        for key, values in fields.lists():
            if not text_encodable(key):
                raise exceptions.ParseError(f"a key in the body {_LONE_SURROGATE}")
            if not all(text_encodable(value) for value in values):
                raise exceptions.ParseError(f"{_place(key)} {_LONE_SURROGATE}")
        return parsed


class FormBodyParser(_EncodableFormMixin, parsers.FormParser):
    pass


class MultiPartBodyParser(_EncodableFormMixin, parsers.MultiPartParser):
    pass
