"""Past one machine: a plan deployed on Ray Serve, the qosbatch batcher inside each replica."""
