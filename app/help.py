""" "How to read this": short explanations of what each Explore view shows, one per topic.

Plain text (markdown) only; every view's heading links its topic (``app/panels/common.py``).
"""

from __future__ import annotations

FIGURES: dict[str, str] = {"lens": "docs/figures/lens_quality_smollm2.png"}  # shown under a topic's text

HOW_TO_READ: dict[str, tuple[str, str]] = {
    "loss": (
        "L̂ and the descent",
        "**L̂(c)** is the answer's loss after the model has read the first *c* tokens of its reasoning: "
        "the prompt, `t[:c]`, then `**Final Answer** \\boxed{` and the reference answer are fed in, and "
        "L̂ is the mean negative log-likelihood (nats) of the answer tokens only. Lower = the answer is "
        "more likely.\n\n"
        "**The descent.** RaML reads a chain of thought as pseudo-gradient descent on this loss: good "
        "reasoning should push L̂ down, step by step. Thin grey = L̂ per token, bold = its EMA (α in the "
        "sidebar), ticks = step boundaries, diamonds = reflection words (*wait*, *hmm*...). The shaded part "
        "comes after the answer's text already appeared in the reasoning: a drop there is partly copying. "
        "The strip below is p(answer): the probability of the answer's first token.\n\n"
        "Click the curve to jump to the nearest step.",
    ),
    "path": (
        "The proxy path (a single-layer implicit update)",
        "Each point is a **step boundary**; arrows follow the reasoning, colour = L̂ there.\n\n"
        "**Proxy space.** At one layer ℓ, let z₀ be the MLP input at the answer's probe token without any "
        "reasoning and z_c the same input after reading `t[:c]`. The rank-1 matrix "
        "ΔW_c = W (z_c − z₀) z₀ᵀ / ‖z₀‖² satisfies (W + ΔW_c) z₀ = W z_c exactly: reading the reasoning acts "
        "on this layer like an **implicit weight update**.\n\n"
        "**What it is not:** not a gradient of any loss, not a change to the real weights, not a statement "
        "about other layers or other positions, and not what training would do. It is an exact rewriting "
        "for one layer at one token; the page draws its 2-D projection (PCA: the two directions of most "
        "variance; UMAP only for longer paths). The *hidden-state* space shows the residual stream itself.\n\n"
        "Click a point to jump to it (the same point again works too).",
    ),
    "step": (
        "Step size and direction",
        "**ΔL̂ over step**: how much this step changed the answer's loss (negative = closer to the answer).\n\n"
        "**Step size ‖g‖**: the distance between consecutive boundaries in the path space, "
        "g_k = ΔW_k − ΔW_(k−1), the pseudo-gradient step. Large = the reasoning moved the implicit update a lot.\n\n"
        "**cos to previous**: +1 = the step continues the previous one (momentum), −1 = it reverses it "
        "(oscillation).\n\n"
        "**Top next tokens**: the final layer's best guesses at the position where the answer starts. "
        "Whitespace is shown as ␣ (space), ⏎ (newline) and → (tab).",
    ),
    "lens": (
        "The logit lens and the tuned lens",
        "Each layer's residual stream at the answer's probe position, decoded with the model's final norm and "
        "LM head as if the model stopped there. Rows = layers (0 at the bottom), columns = step boundaries. "
        "Colour = the answer's NLL (dark = low loss) or p(first answer token) on this run's own range. "
        "A column that darkens from the top down shows the answer forming in later layers first.\n\n"
        "**Logit or tuned** (sidebar, kept in the URL): early layers live in another basis than the LM head, "
        "so the **logit lens** often reads them as noise (a flat, high-loss grid). The **tuned lens** "
        "(Belrose et al. 2023) puts one learned affine map per layer in front of the same readout, trained "
        "to match the final layer's next-token distribution (`raml lens train`); the last layer is the model's "
        "own readout in both. The figure: held-out KL to the final distribution and the answer's lens loss "
        "per layer, logit vs tuned, for SmolLM2-135M (docs/lens.md).\n\n"
        "Click a column to jump to that step.",
    ),
    "text": (
        "The reasoning text",
        "The current step is highlighted, earlier steps are grey, and a little of the text to come is shown "
        "faintly. Reflection words are marked. With **colour tokens by ΔL̂** (sidebar) each token is tinted by "
        "the change of L̂ it caused: blue = the answer got more likely, red = less likely.\n\n"
        "Keys: ← → step, Home/End, Space play/pause, p presentation mode (Esc leaves it).",
    ),
}
