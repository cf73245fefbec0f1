"""The Gradio demo: sampling, conditional generation, the 2-D latent space, diffusion and photo translation."""
