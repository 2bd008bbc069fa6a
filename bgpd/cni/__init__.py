"""The CNI plugin: pod networking set up and torn down for the container runtime."""
