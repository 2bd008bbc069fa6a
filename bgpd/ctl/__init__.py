"""``bgpctl``, the operator's command line (``main``), one module per command group."""
