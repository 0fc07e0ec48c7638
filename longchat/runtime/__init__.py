"""Model loading, our decoder forward, RoPE, and the prefill/decode loop."""
