"""The rehearsal (scripts/rehearse): the rendered Docker stack, run whole on a private
real daemon. See docs/rehearsal.md.
"""
