"""``python -m ganexport``: the same command line as the ``ganexport`` script, for when only the interpreter is known
(a venv that is not activated, ``sys.executable`` in a test)."""

from ganexport.cli import main

if __name__ == "__main__":
    main()
