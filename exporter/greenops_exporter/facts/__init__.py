"""Facts tables every layer may read: GPU models and their figures."""
