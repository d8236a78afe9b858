"""What the pipeline scripts share, standard library only.

``python scripts/<tool>.py`` puts scripts/ first on ``sys.path``, so a tool
imports ``lib.<module>`` with nothing installed (pytest does the same through
``pythonpath``). venv.sh beside these is the shell scripts' share.
"""
