"""nh_models: PyTorch neural operators trained on nh_data shards."""
