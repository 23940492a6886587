"""The pure domain of staging, the delinquency engine: no I/O, no clock, no framework.

Modules: ``policy`` (stage policy documents), ``ledger`` (instalments, repayments, allocation),
``flags`` and ``delinquency`` (DPD, stage selection, next transition date), ``promises``,
``assignment`` (owner choice), ``loan`` (the aggregate state), ``handlers`` (one pure function
per inbound event), ``outbound`` (event payloads). See README.md next to this file.
"""
