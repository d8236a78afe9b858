"""Luna's Pulumi policy pack (CrossGuard): compliance controls as code.

``pulumi preview --policy-pack policy`` and ``pulumi up --policy-pack policy`` run
it against what the program is about to do; ``python -m policy.check DIR`` runs it
on an offline render. docs/compliance.md maps every policy to its control.
"""
