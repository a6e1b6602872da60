"""The in-app self-test of the ACTIONpp module (run by ``ACTIONppTest`` in ACTIONpp.py, inside Slicer)."""
