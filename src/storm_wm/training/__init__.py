"""Training: devices and precision, the update steps, acting, logging, checkpoints, the loop."""
