"""Each primitive's rules side by side: forward, vector-Jacobian product, parameter gradients."""
