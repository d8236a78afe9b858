"""Tests that run the real programs (nginx, promtool, redis, PostgreSQL) on rendered config."""
