"""Tiny Hugging Face causal LMs built locally (nothing downloaded): configs, a word-level tokenizer,
seeded random inits and short fine-tunes, saved with ``save_pretrained``. Used by the ``--hf``
import tests and by ``scripts/bench_hf_import.py``."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

WORDS = ("the a cat dog bird fish sees likes eats finds big small red blue green old new one two three and or "
         "not very quite runs sleeps sings walks here there today now later home park tree river stone house "
         "car road book lamp chair door hill cloud rain sun moon star wind sea sand snow fire leaf rose").split()
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
EMBED_ROWS = 80  # more rows than tokens (like Pythia's padded vocabulary): the rows beyond are never trained


def save_tokenizer(d: Path) -> None:
    """A word-level tokenizer over :data:`WORDS` (ids: the specials, then the words), saved into ``d``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                            eos_token="<eos>").save_pretrained(str(d))


def config(kind: str, layers: int = 2, width: int = 32):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    ids = {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}
    if kind == "gpt2":
        return GPT2Config(vocab_size=EMBED_ROWS, n_positions=32, n_embd=width, n_layer=layers, n_head=4, **ids)
    if kind == "neox":
        return GPTNeoXConfig(vocab_size=EMBED_ROWS, max_position_embeddings=32, hidden_size=width, num_hidden_layers=layers,
                             num_attention_heads=4, intermediate_size=2 * width, tie_word_embeddings=False, **ids)
    if kind == "llama":
        return LlamaConfig(vocab_size=EMBED_ROWS, max_position_embeddings=32, hidden_size=width, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=2 * width, **ids)
    raise ValueError(kind)


def model(kind: str, seed: int, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config(kind, **kw), attn_implementation="eager").eval()


def finetune(m, seed: int, steps: int = 20, lr: float = 3e-3):
    """A few Adam steps of next-token prediction on seeded random word strings (a "fine-tune")."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(len(SPECIALS), len(SPECIALS) + len(WORDS), (16, 12), generator=g)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    m.train()
    for _ in range(steps):
        opt.zero_grad()
        m(input_ids=x, labels=x).loss.backward()
        opt.step()
    return m.eval()


def save(m, d: Path, tokenizer: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    m.save_pretrained(str(d))
    if tokenizer:
        save_tokenizer(d)
    return d


def population(root: Path, kind: str = "gpt2", bases: int = 2, children: int = 2, **kw) -> dict[str, str]:
    """``bases`` seeded models, each briefly trained on its own data, and ``children`` lighter
    fine-tunes of each (other data, 10x smaller steps) under ``root``, one directory per model;
    returns ``{model_id: parent_id}`` (``""`` for a base)."""
    parents = {}
    for b in range(bases):
        base = finetune(model(kind, seed=b, **kw), seed=1000 + b, steps=20, lr=3e-3)
        save(base, root / f"base{b}")
        parents[f"base{b}"] = ""
        for c in range(children):
            child = finetune(copy.deepcopy(base), seed=100 * b + c, steps=10, lr=3e-4)
            save(child, root / f"base{b}-ft{c}")
            parents[f"base{b}-ft{c}"] = f"base{b}"
    return parents


def prompts(path: Path, n: int = 12, seed: int = 0) -> Path:
    """``n`` seeded prompts of 3 to 9 words, one a line."""
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        k = int(torch.randint(3, 10, (1,), generator=g))
        lines.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g)))
    path.write_text("\n".join(lines) + "\n")
    return path


def history_population(root: Path, bases: int = 3, kind: str = "gpt2") -> dict[str, str]:
    """A transformers ``Trainer``'s layout: each model's ``output_dir`` under ``root`` holding
    ``checkpoint-{step}`` directories. ``bases`` seeded models saved at steps 0, 10 and 20 (10 steps of
    their own data between saves), and a fine-tune of each, whose step count starts again at 0 from
    its base's last checkpoint, saved at 0 and 10; returns ``{model_id: parent_id}``."""
    parents = {}
    for b in range(bases):
        m = model(kind, seed=b)
        for step in (0, 10, 20):
            if step:
                m = finetune(m, seed=1000 + 10 * b + step, steps=10, lr=3e-3)
            save(m, root / f"base{b}" / f"checkpoint-{step}")
        parents[f"base{b}"] = ""
        ft = copy.deepcopy(m)
        save(ft, root / f"base{b}-ft" / "checkpoint-0")
        save(finetune(ft, seed=500 + b, steps=10, lr=3e-4), root / f"base{b}-ft" / "checkpoint-10")
        parents[f"base{b}-ft"] = f"base{b}"
    return parents
