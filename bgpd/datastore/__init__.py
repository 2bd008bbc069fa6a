"""The datastore every process meets in: keys holding JSON objects, compare-and-swap
by revision, and change notification (DESIGN.md "The datastore")."""
