"""Operations behind the ``qingshou`` CLI: dead letters, loans across services, the stack.

Each module returns data (dataclasses, dicts); :mod:`shared.cli` only formats it, so the same
functions serve tests, scripts and the CLI.
"""
