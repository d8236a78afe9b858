"""Log lines as Luna's services write them, with personal data in them (and without).

Each PHI line lists the identifiers it carries; a test passes only if none of
them, nor any run of 3+ of their digits, is left after the filters. Numbers
and addresses are fictional (555, 01632, 020 7946, example.com ranges).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLEAN", "PHI"]

# nginx access lines (the old format, with query strings), JSON app logs,
# Node stack traces, PostgreSQL errors, Prisma errors.
PHI: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    # --- e-mail, plain and URL-encoded
    (
        '10.0.3.7 "GET /api/users?email=jane.doe%40example.com HTTP/1.1" 200 512 rt=0.012',
        ("jane.doe%40example.com",),
    ),
    (
        '10.0.3.7 "GET /invite?to=jane%2Btherapy%40example.com&ref=x HTTP/2.0" 302 0',
        ("jane%2Btherapy%40example.com",),
    ),
    (
        '{"level":"warn","msg":"login failed",'
        '"email":"jane.doe+therapy@example.com","ip":"10.0.3.7"}',
        ("jane.doe+therapy@example.com",),
    ),
    (
        "contact: Mary_O'Neil@mail.example.co.uk, backup j.smith@clinic.org",
        ("Mary_O'Neil@mail.example.co.uk", "j.smith@clinic.org"),
    ),
    (
        "Error: P2002 Unique constraint failed on the fields: (`email`) value=PAT.ROSS@EXAMPLE.ORG",
        ("PAT.ROSS@EXAMPLE.ORG",),
    ),
    (
        "mailto:dr.ngozi-okafor@hospital.example.ng?subject=referral",
        ("dr.ngozi-okafor@hospital.example.ng",),
    ),
    # --- US
    (
        '{"level":"info","msg":"crisis callback requested","phone":"555-123-4567","userId":4821}',
        ("555-123-4567",),
    ),
    (
        "callback (555) 123-4567 or 555.123.4567 or 2125551234",
        ("(555) 123-4567", "555.123.4567", "2125551234"),
    ),
    (
        "US +1 555 123 4567 / +1-555-123-4567 / 1-800-273-8255",
        ("555 123 4567", "555-123-4567", "800-273-8255"),
    ),
    ('{"msg":"intake","ssn":"123-45-6789","dob":"1985-03-12"}', ("123-45-6789", "1985-03-12")),
    ("verification for SSN: 123456789 failed", ("123456789",)),
    ("card declined 4111 1111 1111 1111 exp 12/29", ("4111 1111 1111 1111",)),
    ("    at charge (/app/billing.js:42:7) card=5500-0000-0000-0004", ("5500-0000-0000-0004",)),
    # --- UK
    ("UK +44 20 7946 0958, +44 (0)20 7946 0959", ("20 7946 0958", "20 7946 0959")),
    ("patient mobile 07700 900123 landline 020 7946 0000", ("07700 900123", "020 7946 0000")),
    (
        '{"msg":"gp letter","nhs number":"943 476 5919","nino":"QQ 12 34 56 C"}',
        ("943 476 5919", "QQ 12 34 56 C"),
    ),
    ("NI number AB123456C on file", ("AB123456C",)),
    ("tel: 01632 960123", ("01632 960123",)),
    # --- Germany
    ("DE +49 30 901820, 0049 30 9018 2000", ("30 901820", "30 9018 2000")),
    ("Rückruf an (030) 901820 oder 0151 23456789", ("(030) 901820", "0151 23456789")),
    (
        '{"msg":"Versicherung","kvnr":"A123456780","geburtsdatum":"12.03.1985"}',
        ("A123456780", "12.03.1985"),
    ),
    ("Steuer-ID: 12 345 678 901 gespeichert", ("12 345 678 901",)),
    ("IBAN DE89 3704 0044 0532 0130 00 hinterlegt", ("DE89 3704 0044 0532 0130 00",)),
    # --- France
    ("FR +33 6 12 34 56 78, +33 1 23 45 67 89", ("6 12 34 56 78", "1 23 45 67 89")),
    ("rappel au 06 12 34 56 78 ou 01.23.45.67.89", ("06 12 34 56 78", "01.23.45.67.89")),
    ("NIR 1 85 03 75 116 001 42 / 185037511600142", ("1 85 03 75 116 001 42", "185037511600142")),
    ("date de naissance : 12/03/1985", ("12/03/1985",)),
    # --- Spain
    ("ES +34 612 345 678, fijo 91 123 45 67", ("612 345 678", "91 123 45 67")),
    ("DNI 12345678Z, NIE X-1234567-L", ("12345678Z", "X-1234567-L")),
    ("teléfono: 612345678", ("612345678",)),
    ("fecha de nacimiento: 12-03-1985", ("12-03-1985",)),
    # --- Italy
    ("IT +39 06 1234 5678, cell 347 123 4567", ("06 1234 5678", "347 123 4567")),
    ("codice fiscale RSSMRA85C12H501Z", ("RSSMRA85C12H501Z",)),
    ("cellulare 3471234567 / nata il 12/03/1985", ("3471234567", "12/03/1985")),
    # --- elsewhere
    (
        "AU +61 2 9374 4000, IE +353 1 234 5678, JP +81 3-1234-5678",
        ("2 9374 4000", "1 234 5678", "3-1234-5678"),
    ),
    # --- identifiers, tokens
    ("MRN: 00482913 admitted", ("00482913",)),
    ("insurance id=HX-99812-A rejected", ("HX-99812-A",)),
    (
        '10.0.3.7 "GET /reset?token=8f14e45fceea167a5a36dedd4bea2543 HTTP/1.1" 200',
        ("8f14e45fceea167a5a36dedd4bea2543",),
    ),
    ("Authorization: Bearer abcDEF123456ghiJKL789", ("abcDEF123456ghiJKL789",)),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0",),
    ),
    # --- stack traces and database errors
    (
        'Error: invalid input syntax for type uuid: "jane.doe@example.com"\n'
        "    at Parser.parseErrorMessage (/app/node_modules/pg-protocol/dist/parser.js:287:98)\n"
        "    at /app/src/journal.ts:88:11",
        ("jane.doe@example.com",),
    ),
    (
        "PrismaClientKnownRequestError: Unique constraint failed on the constraint: "
        "`User_phone_key` (phone +4915123456789)",
        ("+4915123456789",),
    ),
    (
        'ERROR:  duplicate key value violates unique constraint "users_email_key" '
        "DETAIL:  Key (email)=(sam@example.net) already exists.",
        ("sam@example.net",),
    ),
    (
        '{"level":"error","msg":"sms failed",'
        '"to":"+1 (555) 010-9999","err":"timeout after 3000ms"}',
        ("(555) 010-9999",),
    ),
    (
        'webhook payload {"patient":{"phone":"+39 347 123 4567","mail":"anna@example.it"}}',
        ("347 123 4567", "anna@example.it"),
    ),
    # --- free text, diagnoses, titled names, dates of birth (issue 23), per source.
    # The app (JSON and plain):
    (
        '{"level":"warn","msg":"journal entry flagged","text":"I want to die, I feel hopeless"}',
        ("want to die", "hopeless"),
    ),
    (
        "risk assessment for Mrs Jane Doe: suicidal ideation, plan to overdose on pills",
        ("Jane Doe", "suicidal", "overdose"),
    ),
    (
        '{"msg":"intake","diagnosis":"F32.1","secondary":"F41.1","dob":"1984-03-02"}',
        ("F32.1", "F41.1", "1984-03-02"),
    ),
    (
        "referral codes F431 and X71, R45.851 noted by Dr. O'Neil",
        ("F431", "X71", "R45.851", "O'Neil"),
    ),
    (
        "chat: thinking about killing myself, cutting myself again, born on 02.03.1984",
        ("killing myself", "cutting myself", "02.03.1984"),
    ),
    (
        "Date of Birth: 3/2/1984; history of self-harm and panic attacks, bipolar II",
        ("3/2/1984", "self-harm", "panic attacks", "bipolar"),
    ),
    # nginx (the access line keeps the path; the error log keeps nothing request-scoped):
    (
        '10.0.3.0 "GET /api/search/suicide-hotline HTTP/1.1" 200 12 rt=0.003 urt=0.003',
        ("suicide",),
    ),
    (
        '10.0.3.0 "POST /api/journal/depression-diary HTTP/1.1" 201 48 rt=0.020',
        ("depression",),
    ),
    # PostgreSQL (terse errors still quote a value):
    (
        "2026-01-15 10:42:08.000 UTC [72] user=luna_app db=luna app=luna-web client=10.0.3.12 "
        'ERROR:  value too long for type character varying(8): "F33.2 severe depression"',
        ("F33.2", "depression"),
    ),
    (
        "2026-01-15 10:42:09.000 UTC [73] user=luna_app db=luna app=luna-web client=10.0.3.12 "
        'ERROR:  new row violates check constraint "name_check": Ms Anna Rossi, anorexia',
        ("Anna Rossi", "anorexia"),
    ),
    # Alertmanager (a template or a receiver's error echoes what it was given):
    (
        "ts=2026-01-15T10:42:07.123Z caller=dispatch.go:352 level=error component=dispatcher "
        'msg="Notify for alerts failed" num_alerts=1 '
        'err="email: 550 unknown user jane@example.com"',
        ("jane@example.com",),
    ),
    (
        'ts=2026-01-15T10:42:07.200Z level=warn component=notifier msg="template output" '
        'text="patient Mr. Tom Baker, self harm risk, psychosis (F23)"',
        ("Tom Baker", "self harm", "psychosis", "F23"),
    ),
    (
        "Frau Müller, geb. 12.03.1985, Diagnose F20.0 (Schizophrenie), Angst und anxiety",
        ("Müller", "12.03.1985", "F20.0", "Schizophrenie", "anxiety"),
    ),
)

# What operators need and the filters must leave exactly as it is.
CLEAN: Final[tuple[str, ...]] = (
    "2026-01-15T10:42:07.123Z",
    "2026-01-15 10:42:07 +0200",
    "POST /api/journal 503 in 1234ms",
    "status=200 duration=0.532s bytes=5120",
    "request_id=123e4567-e89b-12d3-a456-426614174000",
    "trace=550e8400-e29b-41d4-a716-446655440000 span=00f067aa0ba902b7",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "user 4821 mood=7 upstream=10.0.3.12:3000",
    "epoch_ms=1768473727123",
    "ts=1768473727 epoch seconds",
    "luna-web 1.0.0 (node v20.18.1, prisma 5.22.0) build 2026.01.15.1",
    "Applying migration `20260115104207_add_mood_scale`",
    "migration 20251201093000_init applied in 842 ms",
    '10.0.3.0 "GET /api/health HTTP/1.1" 200 2 rt=0.001 urt=0.001 ua="10.0.3.12:3000"',
    "checkpoint complete: wrote 1234 buffers (7.5%); 0 WAL file(s) added, 0 removed",
    "heap used 123456789 bytes, rss 234567890",
    "pid=4711 worker 3 of 8 exited with code 0 after 86400s",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "GET /api/crisis/health 200 12.5ms p95=480ms budget=500ms",
    "redis 7.4.1 connected to cache:6379 db=0",
    "2026-01-15 10:42:07.123 UTC [62] LOG:  database system is ready to accept connections",
    # Look-alikes of the issue-23 patterns: versions, hex, key names, headers.
    "GET /api/v1/F5/status HTTP/1.1 200 sha=ff32a1 build F5-2026",
    "Drain finished: 3 replicas, Mrs=0 Dr=0",
    'ts=2026-01-15T10:42:07.123Z caller=main.go:181 level=info msg="Starting Alertmanager"',
    # Digit runs shaped like a bare French NIR (15 digits) right after . - / or :
    # (a float's fraction, a signed query id, a path segment, a field): not identifiers.
    '{"level":"info","msg":"render done","ms":0.185012345678901}',
    "pg_stat_statements queryid=-185012345678901 calls=12",
    "GET /_next/static/chunks/185012345678901.js 200",
    "prisma:query-id:185012345678901 ok",
)
