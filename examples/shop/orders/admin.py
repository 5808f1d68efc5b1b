"""Admin registration for orders."""

from django.contrib import admin

from .models import Order, OrderItem


class OrderItemInline(admin.TabularInline):
    """Order items edited inline on the order page."""

    model = OrderItem
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Order admin."""

    list_display = ("id", "customer", "status", "created_at")
    list_filter = ("status",)
    inlines = (OrderItemInline,)
