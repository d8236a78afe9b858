"""The Luna Pulumi program: settings, ``build()``, the offline render."""
