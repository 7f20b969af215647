"""The seed's cells and their hand-derived backpropagation through time, in numpy: a test reference.

Written as the seed writes them (003_*.txt, "RNN", "LSTM", "GRU" classes): one weight matrix per
gate (W_* for the input, U_* for the recurrence), a Python loop over time, float64, and the
gradients derived by hand, step by step backwards. The library (`jaxml.recurrent`) is checked
against this; it never imports it. Only unmasked, left-to-right sequences: masks, reversal and
any other cell are checked in tests/test_recurrent.py against `jax.grad` of the plain scan.

Backward step (dh', dc' = gradient w.r.t. the carry after the step, dy = w.r.t. its output):
  all:  dh_new = dh' + dy
  RNN:  da = dh_new (1 - h_new^2);  dh = da U^T
  LSTM: dc_new = dc' + dh_new o (1 - tanh(c_new)^2)
        da_i = dc_new g i (1 - i);  da_f = dc_new c f (1 - f);  da_g = dc_new i (1 - g^2)
        da_o = dh_new tanh(c_new) o (1 - o);  dc = dc_new f;  dh = [da_i .. da_o] U^T
  GRU:  da_c = dh_new z (1 - h~^2);  d(r h) = da_c U_h^T
        da_z = dh_new (h~ - h) z (1 - z);  da_r = d(r h) h r (1 - r)
        dh = dh_new (1 - z) + d(r h) r + da_z U_z^T + da_r U_r^T
  weights: dU_* = sum_t h_{t-1}^T da_*  (GRU's U_h: (r h_{t-1})^T da_c), dW_* = sum_t x_t^T da_*.
"""

import numpy as np

GATES = {"rnn": ("a",), "lstm": ("i", "f", "g", "o"), "gru": ("z", "r", "c")}


def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def per_gate(kind: str, params: dict) -> dict:
  """The library's fused weights cut into the seed's per-gate matrices W_*, U_*, b_*."""
  gates, p = GATES[kind], {k: np.asarray(v, np.float64) for k, v in params.items()}
  n = len(gates)
  out = {}
  for g, w, b in zip(gates, np.split(p["w_x"], n, axis=1), np.split(p["b"], n)):
    out["W_" + g], out["b_" + g] = w, b
  recurrent = gates if kind != "gru" else ("z", "r")
  for g, u in zip(recurrent, np.split(p["w_h"], len(recurrent), axis=1)):
    out["U_" + g] = u
  if kind == "gru":
    out["U_c"] = p["u_c"]
  return out


def forward(kind: str, w: dict, x: np.ndarray, h0, c0=None):
  """x: f[B, T, n_in] -> (per-step records, hs f[B, T, H], final h, final c)."""
  h, c, steps, hs = h0, c0, [], []
  for t in range(x.shape[1]):
    xt = x[:, t]
    pre = lambda g, hh=h: xt @ w["W_" + g] + hh @ w["U_" + g] + w["b_" + g]
    rec = {"x": xt, "h": h, "c": c}
    if kind == "rnn":
      h = np.tanh(pre("a"))
      rec["h_new"] = h
    elif kind == "lstm":
      i, f, o = sigmoid(pre("i")), sigmoid(pre("f")), sigmoid(pre("o"))
      g = np.tanh(pre("g"))
      c = f * c + i * g
      h = o * np.tanh(c)
      rec.update(i=i, f=f, g=g, o=o, c_new=c, h_new=h)
    else:
      z, r = sigmoid(pre("z")), sigmoid(pre("r"))
      cand = np.tanh(xt @ w["W_c"] + (r * h) @ w["U_c"] + w["b_c"])
      rec.update(z=z, r=r, cand=cand)
      h = (1.0 - z) * h + z * cand
      rec["h_new"] = h
    steps.append(rec)
    hs.append(h)
  return steps, np.stack(hs, axis=1), h, c


def backward(kind: str, w: dict, steps: list, d_hs: np.ndarray, d_h_final, d_c_final=None):
  """The seed's BPTT: gradients of sum(d_hs * hs) + d_h_final . h_T (+ d_c_final . c_T) w.r.t.
  every per-gate matrix (dict like `w`), the inputs x (f[B, T, n_in]) and h0 (and c0)."""
  grads = {k: np.zeros_like(v) for k, v in w.items()}
  dx = np.zeros((d_hs.shape[0], len(steps), steps[0]["x"].shape[1]))
  dh, dc = d_h_final, d_c_final
  for t in reversed(range(len(steps))):
    s = steps[t]
    dh_new = dh + d_hs[:, t]
    if kind == "rnn":
      da = {"a": dh_new * (1.0 - s["h_new"] ** 2)}
      dh = da["a"] @ w["U_a"].T
    elif kind == "lstm":
      dc_new = dc + dh_new * s["o"] * (1.0 - np.tanh(s["c_new"]) ** 2)
      da = {"i": dc_new * s["g"] * s["i"] * (1 - s["i"]),
            "f": dc_new * s["c"] * s["f"] * (1 - s["f"]),
            "g": dc_new * s["i"] * (1 - s["g"] ** 2),
            "o": dh_new * np.tanh(s["c_new"]) * s["o"] * (1 - s["o"])}
      dc = dc_new * s["f"]
      dh = sum(da[g] @ w["U_" + g].T for g in "ifgo")
    else:
      z, r, cand, h = s["z"], s["r"], s["cand"], s["h"]
      da = {"c": dh_new * z * (1 - cand ** 2)}
      d_rh = da["c"] @ w["U_c"].T
      da["z"] = dh_new * (cand - h) * z * (1 - z)
      da["r"] = d_rh * h * r * (1 - r)
      dh = dh_new * (1 - z) + d_rh * r + da["z"] @ w["U_z"].T + da["r"] @ w["U_r"].T
      grads["U_c"] += (r * h).T @ da["c"]
    for g, d in da.items():
      grads["W_" + g] += s["x"].T @ d
      grads["b_" + g] += d.sum(0)
      if "U_" + g in grads and not (kind == "gru" and g == "c"):
        grads["U_" + g] += s["h"].T @ d
      dx[:, t] += d @ w["W_" + g].T
  return grads, dx, dh, dc
