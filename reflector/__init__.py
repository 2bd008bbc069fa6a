"""RFC 4456 route reflection rules plugged into the RIB's import/export (issue 4)."""
