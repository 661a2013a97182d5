"""Vocabulary of the synthetic demo shop: a dozen categories, each with brands, product types, qualities, features
and a price distribution (lognormal: ``median`` in dollars and ``sigma`` of the log price).

The words are ordinary shop vocabulary; the brand names are invented so that no real company's catalogue is
implied. :mod:`hybrec.data.demo` composes names, descriptions and features from these lists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CategorySpec:
    name: str
    brands: tuple[str, ...]
    products: tuple[str, ...]  # product types ("Whole Bean Coffee")
    qualities: tuple[str, ...]  # adjectives placed before the product type
    variants: tuple[str, ...]  # sizes, colours, editions appended to the name
    features: tuple[str, ...]  # feature bullet points
    median_price: float
    price_sigma: float
    pitch: str  # the description's opening sentence; {product} and {brand} are filled in


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "Coffee",
        ("Brewmaster", "Alto Roasters", "Crema Nova", "Highland Bean", "Morning Ritual", "Cafe Solano", "Kettle & Co"),
        ("Whole Bean Coffee", "Ground Coffee", "Espresso Beans", "Coffee Pods", "Cold Brew Blend", "Decaf Coffee"),
        ("Dark Roast", "Medium Roast", "Light Roast", "Single Origin", "Organic", "Fair Trade", "Italian Style"),
        ("250g", "500g", "1kg", "12 Pack", "24 Pack", "Colombia", "Ethiopia", "Sumatra", "Guatemala"),
        ("Notes of chocolate and caramel", "Freshly roasted in small batches", "100% Arabica beans",
         "Rainforest Alliance certified", "Low acidity", "Resealable valve bag", "Works in drip and French press",
         "Bright citrus finish", "Smooth and full-bodied"),
        14.0, 0.45, "A {product} from {brand} for people who take their morning cup seriously.",
    ),
    CategorySpec(
        "Headphones",
        ("SonicWave", "Auralis", "BassForge", "Quietline", "Tempo Audio", "Nordhavn Sound", "Pulse Labs"),
        ("Wireless Earbuds", "Over-Ear Headphones", "On-Ear Headphones", "Sports Earphones", "Gaming Headset",
         "Noise Cancelling Headphones"),
        ("Wireless", "Bluetooth 5.3", "Studio", "Lightweight", "Foldable", "Pro", "Active Noise Cancelling"),
        ("Black", "White", "Midnight Blue", "Rose Gold", "Graphite", "Gen 2", "Limited Edition"),
        ("Up to 30 hours of battery life", "Active noise cancellation", "Fast charging over USB-C",
         "Built-in microphone for calls", "Sweat and splash resistant", "Memory-foam ear cushions",
         "Low-latency gaming mode", "Multipoint pairing", "Hi-Res audio certified"),
        79.0, 0.75, "{brand} {product} with clear highs, deep bass and all-day comfort.",
    ),
    CategorySpec(
        "Running Shoes",
        ("Stride", "Apex Runner", "TrailKing", "Velocita", "Cloudstep", "Northpeak", "Fleetfoot"),
        ("Running Shoes", "Trail Running Shoes", "Racing Flats", "Stability Running Shoes", "Cushioned Trainers"),
        ("Men's", "Women's", "Lightweight", "Waterproof", "Breathable", "Carbon Plate", "Max Cushion"),
        ("Size 8", "Size 9", "Size 10", "Size 11", "Black/White", "Neon Yellow", "Ocean Blue", "Wide Fit"),
        ("Responsive foam midsole", "Breathable engineered mesh upper", "Grippy rubber outsole", "8mm heel-to-toe drop",
         "Reflective details for night runs", "Rock plate for trail protection", "Padded tongue and collar",
         "Recycled materials"),
        95.0, 0.4, "{brand} {product} built for easy miles and race days alike.",
    ),
    CategorySpec(
        "Books",
        ("Lantern Press", "Northwind Books", "Inkwell House", "Paperkite", "Meridian Publishing", "Oakleaf Editions"),
        ("Mystery Novel", "Science Fiction Novel", "Cookbook", "Biography", "History Book", "Self-Help Book",
         "Fantasy Novel", "Children's Picture Book"),
        ("Bestselling", "Award-Winning", "Illustrated", "Hardcover", "Paperback", "Collector's", "Debut"),
        ("First Edition", "Book 1", "Book 2", "Anniversary Edition", "Large Print", "Boxed Set"),
        ("Over 400 pages", "Includes author interview", "Book club discussion guide", "Full-colour illustrations",
         "Translated into 20 languages", "Perfect gift for readers", "Acid-free paper"),
        16.0, 0.4, "A {product} from {brand} that readers could not put down.",
    ),
    CategorySpec(
        "Gift Cards",
        ("ShopAll", "Cinema City", "Dine Out", "Game Vault", "Spa Retreat", "Travel Club"),
        ("Gift Card", "eGift Card", "Gift Card Multipack", "Birthday Gift Card", "Holiday Gift Card"),
        ("Digital", "Physical", "Printable", "Premium", "Classic"),
        ("$25", "$50", "$100", "$200", "in Greeting Card", "in Gift Box"),
        ("No fees and no expiration date", "Delivered by email within minutes", "Redeemable online and in store",
         "Add a personal message", "Comes in a gift envelope"),
        50.0, 0.55, "The {brand} {product}: the gift that always fits.",
    ),
    CategorySpec(
        "Kitchen",
        ("ChefLine", "Copperleaf", "Kitchara", "Hearth & Home", "Steelcraft", "Panware Co"),
        ("Chef's Knife", "Non-Stick Frying Pan", "Dutch Oven", "Stand Mixer", "Blender", "Cutting Board",
         "Espresso Machine", "Air Fryer"),
        ("Stainless Steel", "Cast Iron", "Professional", "Compact", "Ceramic", "Induction-Ready", "Bamboo"),
        ("8 inch", "10 inch", "12 inch", "5 Quart", "Red", "Black", "Sage Green", "2-Piece Set"),
        ("Dishwasher safe", "PFOA-free non-stick coating", "Oven safe to 260°C", "Ergonomic handle",
         "Full-tang forged blade", "1200 W motor", "Lifetime warranty", "Even heat distribution"),
        45.0, 0.8, "{brand} {product} for home cooks who want restaurant results.",
    ),
    CategorySpec(
        "Toys",
        ("Playmaker", "Wonderbox", "Tiny Titans", "BrightBlocks", "Funhaus", "Little Explorer"),
        ("Building Blocks Set", "Remote Control Car", "Plush Toy", "Puzzle", "Science Kit", "Doll House",
         "Action Figure"),
        ("Educational", "Classic", "Deluxe", "Battery-Free", "STEM", "Wooden", "Glow-in-the-Dark"),
        ("Ages 3+", "Ages 6+", "Ages 8+", "500 Pieces", "1000 Pieces", "Starter Set"),
        ("Encourages creativity and problem solving", "Non-toxic materials", "Includes storage box",
         "Compatible with major brick brands", "Rechargeable battery included", "Safety tested"),
        25.0, 0.6, "{brand} {product} for hours of screen-free fun.",
    ),
    CategorySpec(
        "Skincare",
        ("Dermaluxe", "Pure Botanica", "Glowfield", "Clearwell", "Aqua Veil", "Nordic Skin"),
        ("Moisturizer", "Vitamin C Serum", "Sunscreen SPF 50", "Facial Cleanser", "Night Cream", "Eye Cream",
         "Hyaluronic Acid Serum"),
        ("Fragrance-Free", "Hydrating", "Gentle", "Anti-Aging", "Oil-Free", "Vegan", "Dermatologist-Tested"),
        ("30ml", "50ml", "100ml", "Travel Size", "Twin Pack"),
        ("Suitable for sensitive skin", "Non-comedogenic", "Cruelty-free", "With niacinamide and ceramides",
         "Lightweight, fast-absorbing texture", "Recyclable packaging", "Broad-spectrum UVA/UVB protection"),
        22.0, 0.55, "{brand} {product} for calm, hydrated skin every day.",
    ),
    CategorySpec(
        "Laptop Accessories",
        ("Portix", "DeskPilot", "Voltix", "Keystone Tech", "Cablecraft", "NomadGear"),
        ("Laptop Stand", "USB-C Hub", "Wireless Mouse", "Mechanical Keyboard", "Laptop Sleeve", "Laptop Backpack",
         "65W USB-C Charger", "Webcam"),
        ("Ergonomic", "Aluminium", "Slim", "Portable", "Adjustable", "Water-Resistant", "Backlit"),
        ("13 inch", "15 inch", "16 inch", "Space Grey", "Silver", "Black", "7-in-1", "Bundle"),
        ("Plug and play, no drivers needed", "4K HDMI output", "100W power delivery pass-through",
         "Quiet clicks", "Padded compartment", "Fits MacBook and Windows laptops", "Two-year warranty"),
        35.0, 0.6, "{brand} {product} that makes any desk a better workspace.",
    ),
    CategorySpec(
        "Garden",
        ("GreenThumb", "Terra Verde", "Bloomwell", "Yardsmith", "Rootstock", "Sunpatch"),
        ("Garden Hose", "Pruning Shears", "Raised Garden Bed", "Seed Starter Kit", "Watering Can", "Compost Bin",
         "Solar Garden Lights"),
        ("Heavy-Duty", "Expandable", "Weatherproof", "Organic", "Galvanised", "Eco-Friendly", "Self-Watering"),
        ("25 ft", "50 ft", "Small", "Large", "4-Pack", "Green", "Terracotta"),
        ("UV-resistant materials", "Rust-proof finish", "Easy assembly without tools", "Made from recycled plastic",
         "Ergonomic non-slip grip", "Frost resistant"),
        30.0, 0.65, "{brand} {product} for a greener, happier garden.",
    ),
    CategorySpec(
        "Pet Supplies",
        ("Pawsome", "Happy Tails", "Whisker & Co", "FurBuddy", "Petvana", "Barkley"),
        ("Dog Food", "Cat Food", "Dog Bed", "Cat Scratching Post", "Chew Toy", "Pet Grooming Brush",
         "Dog Harness"),
        ("Grain-Free", "Orthopedic", "Natural", "Durable", "Hypoallergenic", "Senior", "Puppy"),
        ("Small", "Medium", "Large", "2kg", "6kg", "Salmon Recipe", "Chicken Recipe"),
        ("Vet recommended", "No artificial colours or flavours", "Machine washable cover", "Non-slip base",
         "High in protein", "Supports healthy teeth and gums"),
        28.0, 0.6, "{brand} {product} your pet will love.",
    ),
    CategorySpec(
        "Board Games",
        ("Meeple Works", "Dice Tower Games", "Hexagon Play", "Tabletop Titans", "Castle Keep Games"),
        ("Strategy Game", "Party Game", "Cooperative Game", "Card Game", "Family Board Game", "Deck-Building Game"),
        ("Award-Winning", "Fast-Paced", "Family-Friendly", "Deluxe", "Competitive", "Legacy"),
        ("2-4 Players", "2-6 Players", "3-8 Players", "Expansion", "Second Edition"),
        ("Plays in 30-60 minutes", "Easy to learn, hard to master", "Beautifully illustrated components",
         "Great for game nights", "Solo mode included", "High replay value"),
        35.0, 0.45, "{brand} {product} that brings everyone to the table.",
    ),
)
