from django.urls import path

from balise.stock import views

app_name = "stock"

urlpatterns = [
    path("", views.stock_page, name="stock"),
    path("import", views.import_batch, name="import"),
    path("<int:pk>/", views.item_page, name="item"),
    path("<int:pk>/move", views.item_move, name="move"),
    path("<int:pk>/assign", views.item_assign, name="assign"),
]
