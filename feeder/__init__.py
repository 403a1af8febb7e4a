"""The feeder: a light worker process (no TensorFlow) that moves bulk batches from their files
into the models' bulk lanes a window at a time, and their results into results files."""
