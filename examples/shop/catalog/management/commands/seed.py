"""``manage.py seed``: fill the database with deterministic demo data.

Per unit of ``--scale``: 10 users, 50 products and 100 orders of 1-5 items each.
The data depends only on ``--scale`` and on what is already in the database
(a fixed ``random.Random(42)`` and fixed datetimes are used). The command
*appends*: running it twice adds a second batch of rows (usernames and SKUs are
numbered after the existing seeded ones), it does not reset anything.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify
from orders.models import Order, OrderItem

from catalog.models import Category, Product

SEED = 42
# Fixed hash: a "!"-prefixed value is an unusable password and costs no hashing.
UNUSABLE_PASSWORD = "!dbsnap-example-seed-unusable-password"
BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
DEFAULT_CATEGORIES = ["Books", "Electronics", "Home & Garden", "Toys"]
FIRST_NAMES = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Guido"]
LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie"]
ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Handy", "Mini", "Pro", "Rustic", "Smart", "Vintage"]
NOUNS = ["Lamp", "Kettle", "Novel", "Puzzle", "Speaker", "Chair", "Notebook", "Robot", "Planter", "Cable"]
STATUSES = [choice.value for choice in Order.Status]


class Command(BaseCommand):
    """Append deterministic users, products, orders and order items."""

    help = "Fill the database with deterministic demo data (appends; not idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", type=int, default=1, help="10*N users, 50*N products, 100*N orders (default 1).")
        parser.add_argument("--batch-size", type=int, default=2000, help="Rows per bulk_create batch (default 2000).")

    def handle(self, *args: Any, **options: Any) -> None:
        scale: int = options["scale"]
        batch_size: int = options["batch_size"]
        if scale < 1:
            raise CommandError("--scale must be >= 1")
        if batch_size < 1:
            raise CommandError("--batch-size must be >= 1")

        rng = random.Random(SEED)
        with transaction.atomic():
            user_pks = self._create_users(rng, 10 * scale, batch_size)
            products = self._create_products(rng, 50 * scale, batch_size, user_pks)
            n_orders, n_items = self._create_orders(rng, 100 * scale, batch_size, user_pks, products)

        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(user_pks)} users, {len(products)} products, "
                f"{n_orders} orders, {n_items} order items (scale={scale})."
            )
        )

    def _create_users(self, rng: random.Random, count: int, batch_size: int) -> list[int]:
        """Create ``count`` users and return their primary keys."""
        User = get_user_model()
        offset = User.objects.filter(username__startswith="customer").count()
        users = []
        for i in range(offset, offset + count):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            users.append(
                User(
                    username=f"customer{i:07d}",
                    first_name=first,
                    last_name=last,
                    email=f"customer{i:07d}@example.com",
                    phone=f"+1555{rng.randint(0, 9_999_999):07d}",
                    password=UNUSABLE_PASSWORD,
                    date_joined=BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 365)),
                )
            )
        created = User.objects.bulk_create(users, batch_size=batch_size)
        return _pks(created)

    def _create_products(
        self, rng: random.Random, count: int, batch_size: int, user_pks: list[int]
    ) -> list[tuple[int, Decimal]]:
        """Create ``count`` products and return ``(pk, price)`` pairs."""
        for name in DEFAULT_CATEGORIES:
            Category.objects.get_or_create(name=name, defaults={"slug": slugify(name)})
        category_pks = list(Category.objects.order_by("pk").values_list("pk", flat=True))
        offset = Product.objects.filter(sku__startswith="SKU-").count()
        products = []
        for i in range(offset, offset + count):
            products.append(
                Product(
                    name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}",
                    sku=f"SKU-{i:08d}",
                    price=Decimal(rng.randint(99, 99_999)) / 100,
                    category_id=rng.choice(category_pks),
                    created_by_id=rng.choice(user_pks) if rng.random() < 0.8 else None,
                )
            )
        created = Product.objects.bulk_create(products, batch_size=batch_size)
        return list(zip(_pks(created), (p.price for p in created), strict=True))

    def _create_orders(
        self,
        rng: random.Random,
        count: int,
        batch_size: int,
        user_pks: list[int],
        products: list[tuple[int, Decimal]],
    ) -> tuple[int, int]:
        """Create ``count`` orders with 1-5 items each, batch by batch; return (orders, items)."""
        n_items = 0
        for start in range(0, count, batch_size):
            orders = [
                Order(
                    customer_id=rng.choice(user_pks),
                    created_at=BASE_TIME + timedelta(seconds=rng.randint(0, 3600 * 24 * 365)),
                    status=rng.choice(STATUSES),
                )
                for _ in range(min(batch_size, count - start))
            ]
            order_pks = _pks(Order.objects.bulk_create(orders))
            items = []
            for order_pk in order_pks:
                for _ in range(rng.randint(1, 5)):
                    product_pk, price = rng.choice(products)
                    items.append(
                        OrderItem(
                            order_id=order_pk,
                            product_id=product_pk,
                            quantity=rng.randint(1, 5),
                            unit_price=price,
                        )
                    )
            OrderItem.objects.bulk_create(items, batch_size=batch_size)
            n_items += len(items)
        return count, n_items


def _pks(objs: list[Any]) -> list[int]:
    """Primary keys set by bulk_create (needs PostgreSQL or SQLite >= 3.35)."""
    pks = [obj.pk for obj in objs]
    if any(pk is None for pk in pks):
        raise CommandError("bulk_create did not return primary keys; use PostgreSQL or SQLite >= 3.35")
    return pks
