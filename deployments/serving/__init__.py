"""What every family deployment shares: loading models once per replica, the replica board, metrics."""
