"""Data augmentation that runs on the device inside the jitted train step (explicit keys)."""

import jax
import jax.numpy as jnp


def random_shift(x, key, max_shift: int):
  """Shifts each image by independent integer offsets in [-max_shift, max_shift] (zero fill).

  x: f[batch, H, W, C] -> same shape."""
  if max_shift == 0:
    return x
  b, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)
  crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def random_affine(x, key, *, max_shift: float, max_rotate_deg: float, max_scale: float):
  """Random rotation, scaling and shift per image, bilinear resampling with zero fill.

  Each image gets an angle in ±max_rotate_deg, a scale in [1 - max_scale, 1 + max_scale] and a
  shift in ±max_shift pixels, about the image centre. x: f[batch, H, W, C] -> same shape."""
  b, h, w, c = x.shape
  k_rot, k_scale, k_shift = jax.random.split(key, 3)
  angle = jnp.deg2rad(max_rotate_deg) * jax.random.uniform(k_rot, (b,), minval=-1, maxval=1)
  scale = 1.0 + max_scale * jax.random.uniform(k_scale, (b,), minval=-1, maxval=1)
  shift = max_shift * jax.random.uniform(k_shift, (b, 2), minval=-1, maxval=1)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype),
                            indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

  def warp(img, a, s, d):
    # Output pixel (r, c) samples the input at the inverse transform of its position.
    cos, sin = jnp.cos(a) / s, jnp.sin(a) / s
    y, xx = rows - cy - d[0], cols - cx - d[1]
    src_r = cos * y - sin * xx + cy
    src_c = sin * y + cos * xx + cx
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [src_r, src_c], order=1,
                                                          mode="constant", cval=0.0)
    return jnp.stack([sample(img[..., i]) for i in range(c)], axis=-1)

  return jax.vmap(warp)(x, angle, scale, shift)


def random_crop_mask(key, mask, shape, max_cut: float):
  """A mask keeping one random contiguous window of each sequence's valid steps (time crop).

  Each series keeps ceil(u * n) of its n valid steps (u uniform in [1 - max_cut, 1], at least
  one step), starting at a uniform offset. The valid steps are taken to lead each row, as the
  loaders pad at the end. mask: None (every step valid) or f/bool[batch, time]; shape:
  (batch, time) -> f32[batch, time], 1 inside the window. A model that honours its mask (the
  recurrent layer skips masked steps, the readouts leave them out) then sees only the window.
  """
  b, t = shape
  valid = jnp.ones((b, t), jnp.float32) if mask is None else mask.astype(jnp.float32)
  n = valid.sum(axis=1)
  k_len, k_start = jax.random.split(key)
  frac = jax.random.uniform(k_len, (b,), minval=1.0 - max_cut, maxval=1.0)
  keep = jnp.minimum(jnp.maximum(jnp.ceil(frac * n), 1.0), n)
  start = jnp.floor(jax.random.uniform(k_start, (b,)) * (n - keep + 1))
  steps = jnp.arange(t, dtype=jnp.float32)[None, :]
  window = (steps >= start[:, None]) & (steps < (start + keep)[:, None])
  return valid * window.astype(jnp.float32)
