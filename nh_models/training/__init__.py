"""Training: `trainer` (train -> fit -> train_epoch), `steps` (train_step, losses, validation),
`schedules` (ExpHyperbolicLR, warm-up + cosine), `source` (files or fresh orbits),
`checkpoint`, `config` (YAML recipes in nh_models/configs), `distributed` (DDP), `plot`
(loss curves), `tune` (Optuna around `train`), `command` (`nh train`'s checks, defaults and
run-folder names below cli.py).

Nothing is imported here, so `nh_models.training.config` stays light (no torch); import
the module you need, e.g. `from nh_models.training.trainer import train`.
"""
