"""The staging rehearsal (scripts/rehearse): the shipped Docker stack on a private daemon."""
