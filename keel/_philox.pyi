import numpy as np

NOISE_CEILING: float

def uniform_at(key_low: int, key_high: int, position: int) -> float: ...
def cut(
    key_low: int, key_high: int, values: np.ndarray, best: int, position: int, temperature: float
) -> float: ...
def contenders(
    key_low: int,
    key_high: int,
    values: np.ndarray,
    ids: np.ndarray | None,
    cut: float,
    index: np.ndarray,
    uniform: np.ndarray,
) -> tuple[int, bool]: ...
def best_score(
    values: np.ndarray, index: np.ndarray, scale: float, double_log: np.ndarray
) -> int: ...
