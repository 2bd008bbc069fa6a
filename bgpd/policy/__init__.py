"""The NetworkPolicy agent (``bgpd policy``): Kubernetes NetworkPolicy rendered into
one nftables table of its own.  ``model`` (values), ``selection`` (who a selector
picks), ``render`` (the ruleset, event by event), ``ruleset`` (the table and its
transactions), ``nft`` (the one place that runs nft), ``agent`` and ``main``."""
