"""Schemas written the way people write them (mostly without any size bounds), with a
prompt each: the structured-output suite of tests/test_structured_suite.py (a sample) and
bench/structured.py (all of them)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from typing_extensions import TypedDict


class Product(BaseModel):
    name: str
    price: float


class Person(BaseModel):
    name: str
    age: int
    email: str


class Address(BaseModel):
    street: str
    city: str
    country: str
    postal_code: str


class Customer(BaseModel):
    name: str
    address: Address


class Book(BaseModel):
    title: str
    author: str
    year: int
    genres: list[str]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Car(BaseModel):
    make: str
    model: str
    year: int
    color: Color


class Event(BaseModel):
    title: str
    date: datetime.date
    attendees: list[str]


class Task(BaseModel):
    title: str
    done: bool
    priority: Literal["low", "medium", "high"]


class TodoList(BaseModel):
    name: str
    tasks: list[Task]


class Review(BaseModel):
    product: str
    rating: int
    comment: str | None = None


class Recipe(BaseModel):
    name: str
    ingredients: list[str]
    steps: list[str]
    minutes: int


class Point(BaseModel):
    x: float
    y: float


class Polygon(BaseModel):
    name: str
    points: list[Point]


class Company(BaseModel):
    name: str
    founded: int
    employees: list[Person]


class Weather(BaseModel):
    city: str
    temperature_celsius: float
    conditions: str
    humidity: int


class Movie(BaseModel):
    title: str
    director: str
    year: int
    rating: float
    cast: list[str]


class Invoice(BaseModel):
    number: str
    customer: str
    total: float
    paid: bool
    items: list[Product]


class Profile(BaseModel):
    username: str
    bio: str
    followers: int
    verified: bool
    website: str | None = None


class Sentiment(BaseModel):
    text: str
    label: Literal["positive", "negative", "neutral"]
    score: float


class Song(TypedDict):
    title: str
    artist: str
    duration_seconds: int


@dataclass
class Flight:
    airline: str
    number: str
    origin: str
    destination: str
    departure: datetime.datetime


class Meeting(BaseModel):
    subject: str
    start: datetime.datetime
    duration_minutes: int
    participants: list[str]


class Country(BaseModel):
    name: str
    capital: str
    population: int
    languages: list[str]


class Employee(BaseModel):
    id: int
    name: str
    department: str
    salary: float
    manager: str | None = None


class Order(BaseModel):
    order_id: str
    products: list[str]
    quantities: list[int]
    shipping: Address


class Quiz(BaseModel):
    question: str
    options: list[str]
    answer: int


CASES: list[tuple[str, Any, str]] = [
    ("product", Product, "Create a laptop product"),
    ("person", Person, "Make up a person."),
    ("address", Address, "An address in Paris."),
    ("customer", Customer, "A customer with an address."),
    ("book", Book, "A famous book."),
    ("car", Car, "Describe a car."),
    ("event", Event, "A birthday party."),
    ("task", Task, "A task for today."),
    ("todo", TodoList, "A shopping to-do list."),
    ("review", Review, "Review a phone."),
    ("recipe", Recipe, "A pancake recipe."),
    ("polygon", Polygon, "A triangle."),
    ("company", Company, "A small company."),
    ("weather", Weather, "The weather in London."),
    ("movie", Movie, "A science fiction movie."),
    ("invoice", Invoice, "An invoice for office supplies."),
    ("profile", Profile, "A social media profile."),
    ("sentiment", Sentiment, "Classify: I love this!"),
    ("song", Song, "A pop song."),
    ("flight", Flight, "A flight from Paris to Rome."),
    ("meeting", Meeting, "A team meeting tomorrow."),
    ("country", Country, "Describe Japan."),
    ("employee", Employee, "An engineer."),
    ("order", Order, "An online order."),
    ("quiz", Quiz, "A geography quiz question."),
    ("int", int, "How many legs does a spider have?"),
    ("float", float, "What is pi?"),
    ("list-of-str", list[str], "Three colours."),
    ("list-of-int", list[int], "The first prime numbers."),
    ("bool", bool, "Is water wet?"),
    ("literal", Literal["cat", "dog", "bird"], "Which pet?"),
    ("dict-str-int", dict[str, int], "Ages of three friends."),
    ("json-object", {"type": "object"}, "Some JSON about a city."),
    (
        "dict-user",
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
        "A user.",
    ),
    (
        "dict-tags",
        {
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["tags"],
        },
        "Tags for a blog post about cooking.",
    ),
    (
        "dict-nested",
        {
            "type": "object",
            "properties": {
                "user": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                    "required": ["name", "email"],
                },
                "score": {"type": "number"},
            },
            "required": ["user", "score"],
        },
        "A player and their score.",
    ),
    (
        "dict-enum",
        {
            "type": "object",
            "properties": {
                "status": {"enum": ["open", "closed", "pending"]},
                "note": {"type": "string"},
            },
            "required": ["status", "note"],
        },
        "A support ticket.",
    ),
    (
        "dict-date",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "birthday": {"type": "string", "format": "date"},
            },
            "required": ["name", "birthday"],
        },
        "A famous scientist.",
    ),
    (
        "dict-optional",
        {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "subtitle": {"type": "string"},
                "pages": {"type": "integer"},
            },
            "required": ["title"],
        },
        "A magazine.",
    ),
    (
        "dict-array-objects",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                "required": ["city", "population"],
            },
        },
        "The largest cities.",
    ),
    (
        "dict-anyof",
        {
            "type": "object",
            "properties": {"value": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
            "required": ["value"],
        },
        "A measurement.",
    ),
    (
        "dict-email",
        {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"],
        },
        "A contact email.",
    ),
]
