"""The released weights as package data, so a wheel carries them and every install finds them the same way.

Holds no code: ``ganexport.released`` locates this folder (``importlib.resources``) and lists its files.
"""
