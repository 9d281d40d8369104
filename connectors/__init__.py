"""Channel connectors: each turns one channel's orders into canonical orders."""
