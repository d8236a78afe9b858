"""What Logstash redacts from log events, and which fields it keeps whole.

Patterns are Ruby (Onigmo) regular expressions: Logstash's mutate filter
compiles them with ``Regexp.new`` (logstash-filter-mutate, lib/logstash/
filters/mutate.rb, ``register``), under JRuby's Joni, a port of Onigmo. They
are applied in order, so the specific identifiers (e-mail, IBAN, card, national
ids) go before the generic phone shapes that would otherwise eat their digits.

Guard rails for operational detail, which these patterns must leave alone:
trace/span ids and UUIDs (digits inside hex words: every pattern refuses to
start after a word character, ``-``, ``.`` or ``:``), epoch timestamps (a bare
run of digits matches only as a NANP or Italian mobile number, and epochs start
with 1), ISO dates and clock times (no pattern takes ``:``), versions and
durations (too few digits).
"""

from __future__ import annotations

from typing import Final

__all__ = ["FREE_TEXT_FIELDS", "KEPT_FIELDS", "REDACTIONS", "Redaction"]

Redaction = tuple[str, str, str]
"""(what, Onigmo pattern, replacement; ``\\1`` refers to a group, as in Ruby's gsub)."""

# Not after a word character, + . - : or /, so digits inside ids, versions,
# addresses and paths never start a match.
_START = r"(?<![\w+.:/-])"
_END = r"(?![\w-])"

REDACTIONS: Final[tuple[Redaction, ...]] = (
    # Plain and URL-encoded (%40) addresses; %2B and %2E in the local part are
    # caught by the % in its class.
    (
        "email",
        r"(?i)[a-z0-9._%+'-]+(?:@|%40)[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}",
        "[email redacted]",
    ),
    # Credentials that reach logs through URLs and headers.
    ("jwt", r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*", "[token redacted]"),
    ("bearer", r"(?i)\b(bearer)\s+[\w.~+/=-]{8,}", r"\1 [token redacted]"),
    (
        "secret-param",
        r"(?i)([?&;](?:access_token|token|password|passwd|pwd|secret|code|api_key|key)=)[^&\s]+",
        r"\1[redacted]",
    ),
    # Bank and card numbers.
    (
        "iban",
        _START + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _END,
        "[iban redacted]",
    ),
    (
        "card",
        _START + r"(?:4\d{3}|5[1-5]\d{2}|3[47]\d{2}|6011)(?:[ -]?\d{4}){2}[ -]?\d{3,4}" + _END,
        "[card redacted]",
    ),
    # National identifiers: US SSN, UK National Insurance, French NIR (spaced,
    # or 15 digits bare: a bare 13-digit run is an epoch in milliseconds),
    # Italian codice fiscale, Spanish DNI/NIE, German health-insurance number.
    ("ssn", _START + r"\d{3}-\d{2}-\d{4}" + _END, "[ssn redacted]"),
    (
        "ssn-context",
        r"(?i)\b(ssn|social security(?: number| no\.?)?)(\W{1,3})\d{9}\b",
        r"\1\2[ssn redacted]",
    ),
    (
        "uk-nino",
        r"(?<!\w)[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)",
        "[id redacted]",
    ),
    (
        "fr-nir",
        _START
        + r"(?:[12] \d{2} (?:0[1-9]|1[0-2]) (?:\d{2}|2[AB]) \d{3} \d{3}(?: \d{2})?"
        + r"|[12]\d{2}(?:0[1-9]|1[0-2])(?:\d{2}|2[AB])\d{8})"
        + _END,
        "[id redacted]",
    ),
    ("it-cf", r"(?i)(?<!\w)[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z](?!\w)", "[id redacted]"),
    ("es-dni", r"(?<!\w)(?:\d{8}|[XYZ]-?\d{7})-?[A-HJ-NP-TV-Z](?!\w)", "[id redacted]"),
    ("de-kvnr", r"(?<!\w)[A-Z]\d{9}(?!\w)", "[id redacted]"),
    (
        "record-id",
        r"(?i)\b(mrn|medical record(?: number| no\.?)?|nhs(?: number| no\.?)|"
        r"insurance(?:[ _-]?(?:id|number|no\.?)))(\W{1,3})\w[\w-]*(?: \d[\d-]*)*",
        r"\1\2[id redacted]",
    ),
    (
        "tax-id",
        r"(?i)\b(steuer-?id|steuer-?identifikationsnummer|idnr|tax[ _-]?id)(\W{1,3})"
        r"\d{2} ?\d{3} ?\d{3} ?\d{3}",
        r"\1\2[id redacted]",
    ),
    # Diagnoses: ICD-10 chapter V (F00-F99, mental and behavioural disorders),
    # intentional self-harm (X60-X84) and suicidal ideation (R45.851), with or
    # without the dot. Upper case, as the codes are written.
    (
        "icd10-mental",
        r"(?<![\w.:/-])(?:F\d{2}|X[67]\d|X8[0-4])(?:\.?\d{1,2})?(?![\w-])|(?<![\w.:/-])R45\.?851(?![\w-])",
        "[diagnosis redacted]",
    ),
    # A title then one or two capitalised names: Mrs Jane Doe, Dr. O'Neil, Frau Müller.
    (
        "titled-name",
        r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|Sr|Sra|Sig|Dott)\.?"
        r" \p{Lu}[\p{L}'-]+(?: \p{Lu}[\p{L}'-]+)?",
        "[name redacted]",
    ),
    # Free text about a person's state: whatever the app or a user lets slip
    # into a log line. Operational logs never need these words.
    (
        "distress",
        r"(?i)\b(?:suicid\w*|self[- ]?harm\w*|kill(?:ing)? (?:my|him|her|them)sel(?:f|ves)"
        r"|end(?:ing)? (?:it all|my life|his life|her life)|(?:want|wants|wanted) to die"
        r"|overdos\w*|cutting (?:myself|himself|herself)|hopeless\w*|worthless\w*"
        r"|panic attacks?|depress(?:ed|ion|ive)\w*|anxiety|psychos[ie]s|psychotic"
        r"|bipolar|schizo\w*|anorexi\w*|bulimi\w*|self[- ]?injur\w*)",
        "[phrase redacted]",
    ),
    # Dates of birth, only where a label says so: other dates are timestamps.
    (
        "birth-date",
        r"(?i)\b(dob|date of birth|birth ?date|born(?: on)?|geburtsdatum|geb\.|date de naissance"
        r"|née? le|fecha de nacimiento|data di nascita|nat[oa] il)(\W{1,3})"
        r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}",
        r"\1\2[dob redacted]",
    ),
    # Phones. International: + or 00, a country code, 8+ digits in all, single
    # separators and an optional trunk (0), e.g. +44 (0)20 7946 0958.
    (
        "phone-intl",
        _START
        + r"(?:\+|00)(?=(?:[ .()/-]{0,2}\d){8})[1-9]\d{0,2}(?: ?\(0\))?"
        + r"(?:[ ./-]?\(?\d{1,5}\)?){1,6}"
        + _END,
        "[phone redacted]",
    ),
    # US/Canada (NANP): separated, or 10 bare digits with a valid area code
    # and exchange (an epoch in seconds starts with 1, so it never matches).
    (
        "phone-nanp",
        _START
        + r"(?:1[ .-]?)?(?:\(\d{3}\) ?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}"
        + _END
        + r"|"
        + _START
        + r"(?:1[ .-]?)?[2-9]\d{2}[2-9]\d{6}"
        + _END,
        "[phone redacted]",
    ),
    # Trunk-0 national numbers: UK 020 7946 0958 / 07700 900123, DE (030) 901820
    # / 0151 23456789, FR 06 12 34 56 78 / 01.23.45.67.89, IT 06 1234 5678.
    # 9+ digits, and never a dd-mm-yyyy or dd/mm/yyyy date.
    (
        "phone-national",
        _START
        + r"(?!\d{1,2}[./-]\d{1,2}[./-]\d{2,4}(?!\d))"
        + r"(?=(?:[ ()/-]{0,2}\d){9})"
        + r"(?:\(0\d{1,4}\)|0\d{1,4})(?:[ /-]?\d{2,8}){1,4}"
        + _END
        + r"|"
        + _START
        + r"0[1-9](?:\.\d{2}){4}"
        + _END,
        "[phone redacted]",
    ),
    # Spain (no trunk 0): 612 345 678, 91 123 45 67; Italy mobile 347 123 4567.
    (
        "phone-es-it",
        _START
        + r"(?:[6-9]\d{2}(?:[ .-]\d{3}){2}|[89]\d[ .-]\d{3}(?:[ .-]\d{2}){2}"
        + r"|3[1-9]\d[ .-]?\d{3}[ .-]?\d{3,4})"
        + _END,
        "[phone redacted]",
    ),
    # Whatever follows a phone label.
    (
        "phone-label",
        r"(?i)\b(tel|phone|mobile|cell|fax|telefon|handy|t[ée]l[ée]phone|portable"
        r"|tel[ée]fono|m[óo]vil|cellulare)(\W{1,3})\+?[\d(][\d ()./-]{5,}\d",
        r"\1\2[phone redacted]",
    ),
)

FREE_TEXT_FIELDS: Final = ("message", "full_message", "command")
"""Fields whose text comes from the application or its command line: redacted."""

KEPT_FIELDS: Final[dict[str, str]] = {
    "@timestamp": "set by the shipper from the event time",
    "@version": "Logstash's own event version",
    "host": "the Docker host or stack name the shipper sets",
    "source_host": "the shipper's address on the private network",
    "level": "the syslog severity the shipper sets",
    "facility": "the GELF facility the shipper sets",
    "container_name": "the container name, set by the Docker daemon",
    "container_id": "the container id, set by the Docker daemon",
    "image_name": "the image reference, set by the Docker daemon",
    "image_id": "the image digest, set by the Docker daemon",
    "created": "the container's creation time, set by the Docker daemon",
    "tag": "the log tag, set by the Docker daemon from the container name",
    "stream": "stdout or stderr, set by the container runtime",
    "logtag": "the CRI partial-line flag, set by the container runtime",
    "stack": "the stack name, set by the collector's configuration",
    "namespace": "the Kubernetes namespace, set by the collector's configuration",
    "log_file": "the node's log file (pod, namespace, container), set by the collector",
    "luna": "fields this pipeline adds ([luna][stack])",
    "tags": "Logstash's own failure tags (_grokparsefailure, _mutate_error)",
}
"""Fields kept whole: set by the runtime or this pipeline, never by the app or a
user, and needed to find an event. Every other field is dropped (prune), so
nothing unlisted reaches Elasticsearch unredacted."""
