"""Async adapters for everything that is not a GPU: kubelet, inference servers, cgroups."""
