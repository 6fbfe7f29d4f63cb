"""The paper's pipeline as library code, one module per stage: ``supervised`` (generate,
critique, revise), ``judging`` (a feedback model picks the better response), ``feedback``
(preference records: compare and prefs), ``evaluate`` (systems judged against each other)."""
