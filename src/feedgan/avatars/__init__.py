"""Avatar GANs: load, train, sample and score small profile pictures."""
