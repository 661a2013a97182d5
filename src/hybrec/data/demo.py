"""A synthetic, deterministic demo shop: products, shoppers with latent tastes, and their browsing history.

The generator is a small latent-factor simulation, so that collaborative filtering has real structure to learn:

* **Catalogue.** Products are spread over the categories of :mod:`hybrec.data.demo_catalog`, with a brand, a name
  composed from the category's vocabulary, a lognormal price (per-category median and spread), a description and
  features. Each product has a latent vector ``v = category centre + brand offset + noise`` (dimension 8) and a
  popularity drawn from a Zipf-like power law (``popularity ∝ rank^-0.9``, ranks shuffled).
* **Shoppers.** Each user prefers two or three categories (Dirichlet weights), one or two brands in each, and a
  price band (budget / mid / premium). Their latent vector is the weighted mix of their categories' centres plus
  noise, and their activity level is lognormal.
* **Behaviour.** A user's affinity for a product is ``u·v + brand bonus - price mismatch + β·log popularity``.
  The products they view are drawn without replacement with probability ∝ ``exp(affinity / T)`` (Gumbel top-k),
  then each view may become a click, a cart add and a purchase with probabilities rising with affinity
  (a logistic funnel), and about half of the purchases get a 1-5 star rating that follows the affinity. Events
  are spread over 120 days from 2025-09-01 (UTC), each funnel step a little after the one before.

The exposure model (softmax over latent affinity plus a popularity term) follows the usual simulation design of
e.g. Rohde et al., *RecoGym* (2018) and Ie et al., *RecSim* (2019), reduced to a few lines of numpy. Because the
preference signal is low-rank and user-specific while popularity is only one term, a matrix-factorisation model
(Hu, Koren & Volinsky 2008) beats the popularity baseline on held-out purchases (tested in
``tests/data/test_demo.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from hybrec.data.demo_catalog import CATEGORIES, CategorySpec
from hybrec.data.progress import count_progress
from hybrec.data.records import DEFAULT_KIND_WEIGHTS, InteractionRecord, ItemRecord, SourceData, UserRecord

START = datetime(2025, 9, 1, tzinfo=UTC)
DAYS = 120
_DIM = 8
_POPULARITY_EXPONENT = 0.9
_POPULARITY_WEIGHT = 0.6  # β: how much global popularity shapes what everyone sees
_TEMPERATURE = 0.7
_BRAND_BONUS = 1.0
_PRICE_PENALTY = 0.8
_USER_CHUNK = 512  # users scored at once (memory: chunk × n_items floats)
PRICE_BANDS = ("budget", "mid", "premium")


def generate_demo_shop(seed: int = 42, n_users: int = 2000, n_items: int = 3000) -> SourceData:
    """A deterministic synthetic shop: the same ``seed`` and sizes always give the same records.

    Parameters
    ----------
    seed:
        Seed of the random generator.
    n_users:
        Number of shoppers (about 40 events each on average, so 2,000 users give roughly 80k interactions).
    n_items:
        Number of products, spread over the dozen categories.

    Returns
    -------
    SourceData
        Items and users as lists, interactions as a generator (generated user chunk by user chunk).
    """
    if n_users < 1 or n_items < len(CATEGORIES):
        raise ValueError(f"need n_users >= 1 and n_items >= {len(CATEGORIES)}, got {n_users} and {n_items}")
    rng = np.random.default_rng(seed)
    catalog = _Catalog(rng, n_items)
    shoppers = _Shoppers(rng, n_users, catalog)
    events_seed = int(rng.integers(2**63 - 1))
    return SourceData(
        name=f"demo-shop:seed={seed}",
        users=shoppers.records(),
        items=catalog.records,
        interactions=_interactions(np.random.default_rng(events_seed), catalog, shoppers),
    )


class _Catalog:
    def __init__(self, rng: np.random.Generator, n_items: int) -> None:
        n_cat = len(CATEGORIES)
        self.category_centres = rng.normal(0.0, 1.0, size=(n_cat, _DIM))
        # Category sizes vary (some shops have many more books than board games), but every category has items.
        shares = rng.dirichlet(np.full(n_cat, 4.0))
        counts = np.maximum(1, np.floor(shares * (n_items - n_cat)).astype(int) + 1)
        counts[np.argmax(counts)] += n_items - counts.sum()
        self.category = np.repeat(np.arange(n_cat), counts)
        rng.shuffle(self.category)
        self.brand_offsets = {(c, b): rng.normal(0.0, 0.5, size=_DIM)
                              for c, spec in enumerate(CATEGORIES) for b in range(len(spec.brands))}
        self.brand = np.array([rng.integers(len(CATEGORIES[c].brands)) for c in self.category])
        self.vectors = np.stack([self.category_centres[c] + self.brand_offsets[(int(c), int(b))]
                                 for c, b in zip(self.category, self.brand, strict=True)])
        self.vectors += rng.normal(0.0, 0.45, size=self.vectors.shape)
        ranks = rng.permutation(n_items) + 1
        self.log_popularity = -_POPULARITY_EXPONENT * np.log(ranks)
        self.log_popularity -= self.log_popularity.mean()
        z = rng.normal(0.0, 1.0, size=n_items)  # price z-score within the category
        medians = np.array([CATEGORIES[c].median_price for c in self.category])
        sigmas = np.array([CATEGORIES[c].price_sigma for c in self.category])
        self.price_z = z
        self.price = np.round(np.maximum(0.99, medians * np.exp(sigmas * z)), 0) - 0.01
        self._names: set[str] = set()
        self.records = [self._record(rng, i) for i in range(n_items)]

    def _record(self, rng: np.random.Generator, index: int) -> ItemRecord:
        spec: CategorySpec = CATEGORIES[self.category[index]]
        brand = spec.brands[self.brand[index]]
        product = spec.products[rng.integers(len(spec.products))]
        quality = spec.qualities[rng.integers(len(spec.qualities))]
        variant = spec.variants[rng.integers(len(spec.variants))]
        model = f"{brand[:3].upper()}-{index + 1:05d}"
        # "Wireless" + "Wireless Earbuds" would read "Wireless Wireless Earbuds": the quality goes when redundant.
        label = product if quality.lower() in product.lower() else f"{quality} {product}"
        name = f"{brand} {label}, {variant}"
        if name in self._names:  # names are unique: a repeated composition gets its model number
            name = f"{name} ({model})"
        self._names.add(name)
        picked = rng.choice(len(spec.features), size=min(4, len(spec.features)), replace=False)
        features = [spec.features[k] for k in sorted(picked)]
        description = (f"{spec.pitch.format(product=product, brand=brand)} "
                       f"{label} ({variant}). {features[0]}; {features[1][0].lower()}{features[1][1:]}.")
        return ItemRecord(
            external_id=f"P{index + 1:05d}", name=name, category=spec.name, brand=brand, description=description,
            features=features, price=float(self.price[index]),
            attributes={"model": model},
        )


class _Shoppers:
    def __init__(self, rng: np.random.Generator, n_users: int, catalog: _Catalog) -> None:
        n_cat = len(CATEGORIES)
        self.n = n_users
        self.favourites: list[np.ndarray] = []
        self.category_weight = np.zeros((n_users, n_cat))
        self.brand_pref = np.zeros((n_users, n_cat, max(len(c.brands) for c in CATEGORIES)), dtype=bool)
        for u in range(n_users):
            k = int(rng.integers(2, 4))
            favourites = rng.choice(n_cat, size=k, replace=False)
            self.favourites.append(favourites)
            self.category_weight[u, favourites] = rng.dirichlet(np.full(k, 2.0))
            for c in favourites:
                n_brands = len(CATEGORIES[c].brands)
                self.brand_pref[u, c, rng.choice(n_brands, size=int(rng.integers(1, 3)), replace=False)] = True
        self.vectors = self.category_weight @ catalog.category_centres * 1.6
        self.vectors += rng.normal(0.0, 0.35, size=self.vectors.shape)
        self.price_band = rng.choice(3, size=n_users, p=[0.35, 0.45, 0.2])
        self.activity = np.clip(rng.lognormal(np.log(22.0), 0.7, size=n_users), 4, 400).astype(int)
        self.active_from = rng.uniform(0, DAYS * 0.6, size=n_users)

    def records(self) -> list[UserRecord]:
        return [
            UserRecord(f"U{u + 1:05d}", {
                "favourite_categories": [CATEGORIES[c].name for c in self.favourites[u]],
                "price_band": PRICE_BANDS[self.price_band[u]],
            })
            for u in range(self.n)
        ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _interactions(rng: np.random.Generator, catalog: _Catalog, shoppers: _Shoppers) -> Iterator[InteractionRecord]:
    item_ids = [record.external_id for record in catalog.records]
    user_ids = [f"U{u + 1:05d}" for u in range(shoppers.n)]
    band_centre = np.array([-0.9, 0.0, 1.0])
    n_items = len(item_ids)
    bar = count_progress(shoppers.n, "demo shop", unit="users")
    try:
        for lo in range(0, shoppers.n, _USER_CHUNK):
            hi = min(lo + _USER_CHUNK, shoppers.n)
            affinity = shoppers.vectors[lo:hi] @ catalog.vectors.T / np.sqrt(_DIM)
            affinity += _BRAND_BONUS * shoppers.brand_pref[lo:hi][:, catalog.category, catalog.brand]
            wanted_price = band_centre[shoppers.price_band[lo:hi]][:, None]
            affinity -= _PRICE_PENALTY * (catalog.price_z[None, :] - wanted_price) ** 2
            exposure = affinity / _TEMPERATURE + _POPULARITY_WEIGHT * catalog.log_popularity[None, :]
            # Gumbel top-k: the k largest of logits + Gumbel noise are a sample without replacement ∝ softmax.
            keys = exposure + rng.gumbel(size=exposure.shape)
            for row in range(hi - lo):
                u = lo + row
                k = min(int(shoppers.activity[u]), n_items)
                viewed = np.argpartition(-keys[row], k - 1)[:k]
                yield from _funnel(rng, user_ids[u], viewed, affinity[row], item_ids, shoppers.active_from[u])
            bar.update(hi - lo)
    finally:
        bar.close()


def _funnel(
    rng: np.random.Generator, user_id: str, viewed: np.ndarray, affinity: np.ndarray, item_ids: list[str],
    active_from: float,
) -> Iterator[InteractionRecord]:
    a = affinity[viewed]
    z = (a - affinity.mean()) / (affinity.std() + 1e-9)  # how much this user likes the item, relative to the shop
    click = rng.random(len(viewed)) < _sigmoid(0.9 * z - 0.3)
    cart = click & (rng.random(len(viewed)) < _sigmoid(1.1 * z - 1.4))
    purchase = cart & (rng.random(len(viewed)) < _sigmoid(0.8 * z + 0.2))
    rated = purchase & (rng.random(len(viewed)) < 0.5)
    stars = np.clip(np.rint(3.2 + 0.9 * (z - 1.0) + rng.normal(0.0, 0.6, len(viewed))), 1, 5)
    days = rng.uniform(active_from, DAYS - 1, size=len(viewed))
    # Seconds between funnel steps: at least one, so a user's events on an item never share a timestamp.
    steps = (1.0 + rng.exponential(90.0, size=(len(viewed), 4))).cumsum(axis=1)
    rating_delay = rng.uniform(1, 10, size=len(viewed))
    for j, item in enumerate(viewed):
        item_id = item_ids[item]
        t0 = START + timedelta(days=float(days[j]))
        yield _event(user_id, item_id, "view", t0)
        if click[j]:
            yield _event(user_id, item_id, "click", t0 + timedelta(seconds=float(steps[j, 0])))
        if cart[j]:
            yield _event(user_id, item_id, "cart", t0 + timedelta(seconds=float(steps[j, 1])))
        if purchase[j]:
            yield _event(user_id, item_id, "purchase", t0 + timedelta(seconds=float(steps[j, 2])))
        if rated[j]:
            ts = min(t0 + timedelta(days=float(rating_delay[j])), START + timedelta(days=DAYS))
            yield _event(user_id, item_id, "rating", ts, rating=float(stars[j]))


def _event(user_id: str, item_id: str, kind: str, ts: datetime, rating: float | None = None) -> InteractionRecord:
    # Whole seconds: stored timestamps compare equal after a round trip through any database.
    ts = ts.replace(microsecond=0)
    return InteractionRecord(user_id, item_id, kind, ts, rating=rating, weight=DEFAULT_KIND_WEIGHTS[kind],
                             source_file="demo-shop")
