"""Calico v3 resources and the label selector language they use."""
