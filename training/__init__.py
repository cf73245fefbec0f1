"""Training: offline datasets, nets, per-family losses and one shared loop.

Each family has a compact script (autoencoder.py, vae.py, dcgan.py, wgan_gp.py,
cgan.py, cyclegan.py) that says only what differs: which nets, which losses.
"""
