"""Pure builders for every configuration file Luna ships.

Each function takes plain, typed values and returns text (or a dict). No
Pulumi resources, no I/O: unit tests call them directly, and the real
programs (nginx, promtool, redis-server, PostgreSQL) check their output.
"""
