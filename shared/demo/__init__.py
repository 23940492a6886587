"""The demo: a seeded synthetic portfolio (``generator``), played through the running stack
(``player``), and the collections manager's summary at the end (``summary``)."""
