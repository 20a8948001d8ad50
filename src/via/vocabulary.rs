//! The VIA dataset's fixed vocabulary: countries and topics in the paper's code order, the 56
//! Schwartz values in the metric (matrix column) order, and the value definitions in the order
//! the Task-1 prompt lists them.

/// The 12 countries, in the order of the paper's code (scenario i = country·11 + topic).
pub const COUNTRIES: [&str; 12] = [
    "United States",
    "India",
    "Pakistan",
    "Nigeria",
    "Philippines",
    "United Kingdom",
    "Germany",
    "Uganda",
    "Canada",
    "Egypt",
    "France",
    "Australia",
];

/// The paper's abbreviations of `COUNTRIES`, same order.
pub const COUNTRY_ABBREVIATIONS: [&str; 12] = [
    "US", "IND", "PAK", "NRA", "PHIL", "UK", "GER", "UG", "CA", "EG", "FR", "AUS",
];

/// The 11 social topics, in code order.
pub const TOPICS: [&str; 11] = [
    "Politics",
    "Social Networks",
    "Social Inequality",
    "Family & Changing Gender Roles",
    "Work Orientation",
    "Religion",
    "Environment",
    "National Identity",
    "Citizenship",
    "Leisure Time and Sports",
    "Health and Health Care",
];

/// The paper's short names of `TOPICS`, same order.
pub const TOPIC_SHORT_NAMES: [&str; 11] = [
    "Politics",
    "SocialNet",
    "Inequality",
    "Family",
    "Work",
    "Religion",
    "Env",
    "Identity",
    "Citizenship",
    "Leisure",
    "Health",
];

/// The 56 values in metric order (the `schwartz_values` dict of the paper's notebooks): the
/// column order of the V and A matrices and the tie-break order of rankings.
pub const VALUES: [&str; 56] = [
    "Social Power",
    "Authority",
    "Wealth",
    "Preserving my Public Image",
    "Social Recognition",
    "Successful",
    "Capable",
    "Ambitious",
    "Influential",
    "Intelligent",
    "Self-Respect",
    "Pleasure",
    "Enjoying Life",
    "Daring",
    "A Varied Life",
    "An Exciting Life",
    "Creativity",
    "Curious",
    "Freedom",
    "Choosing Own Goals",
    "Independent",
    "Protecting the Environment",
    "A World of Beauty",
    "Broad-Minded",
    "Social Justice",
    "Wisdom",
    "Equality",
    "A World at Peace",
    "Inner Harmony",
    "Unity With Nature",
    "Helpful",
    "Honest",
    "Forgiving",
    "Loyal",
    "Responsible",
    "True Friendship",
    "A Spiritual Life",
    "Mature Love",
    "Meaning in Life",
    "Devout",
    "Accepting my Portion in Life",
    "Humble",
    "Moderate",
    "Respect for Tradition",
    "Detachment",
    "Politeness",
    "Honoring of Parents and Elders",
    "Obedient",
    "Self-Discipline",
    "Clean",
    "National Security",
    "Social Order",
    "Family Security",
    "Reciprocation of Favors",
    "Healthy",
    "Sense of Belonging",
];

/// Value definitions ("value claims", paper Table 7) in the order the Task-1 prompt lists the
/// values. Spellings are the paper's, typos included ("aspriring").
pub const DEFINITIONS: [(&str, &str); 56] = [
    ("Equality", "equal opportunity for all"),
    ("Inner Harmony", "at peace with myself"),
    ("Social Power", "control over others, dominance"),
    ("Pleasure", "gratification of desires"),
    ("Freedom", "freedom of action and thought"),
    (
        "A Spiritual Life",
        "emphasis on spiritual not material matters",
    ),
    ("Sense of Belonging", "feeling that others care about me"),
    ("Social Order", "stability of society"),
    ("An Exciting Life", "stimulating experience"),
    ("Meaning in Life", "a purpose in life"),
    ("Politeness", "courtesy, good manners"),
    ("Wealth", "material possessions, money"),
    ("National Security", "protection of my nation from enemies"),
    ("Self-Respect", "belief in one's own worth"),
    ("Reciprocation of Favors", "avoidance of indebtedness"),
    ("Creativity", "uniqueness, imagination"),
    ("A World at Peace", "free of war and conflict"),
    (
        "Respect for Tradition",
        "preservation of time-honored customs",
    ),
    ("Mature Love", "deep emotional and spiritual intimacy"),
    (
        "Self-Discipline",
        "self-restraint, resistance to temptation",
    ),
    ("Detachment", "from worldly concerns"),
    ("Family Security", "safety for loved ones"),
    ("Social Recognition", "respect, approval by others"),
    ("Unity With Nature", "fitting into nature"),
    (
        "A Varied Life",
        "filled with challenge, novelty, and change",
    ),
    ("Wisdom", "a mature understanding of life"),
    ("Authority", "the right to lead or command"),
    ("True Friendship", "close, supportive friends"),
    ("A World of Beauty", "beauty of nature and the arts"),
    ("Social Justice", "correcting injustice, care for the weak"),
    ("Independent", "self-reliant, self-sufficient"),
    ("Moderate", "avoiding extremes of feeling and action"),
    ("Loyal", "faithful to my friends, group"),
    ("Ambitious", "hardworking, aspriring"),
    ("Broad-Minded", "tolerant of different ideas and beliefs"),
    ("Humble", "modest, self-effacing"),
    ("Daring", "seeking adventure, risk"),
    ("Protecting the Environment", "preserving nature"),
    ("Influential", "having an impact on people and events"),
    ("Honoring of Parents and Elders", "showing respect"),
    ("Choosing Own Goals", "selecting own purposes"),
    ("Healthy", "not being sick physically or mentally"),
    ("Capable", "competent, effective, efficient"),
    (
        "Accepting my Portion in Life",
        "submitting to life's circumstances",
    ),
    ("Honest", "genuine, sincere"),
    ("Preserving my Public Image", "protecting my 'face'"),
    ("Obedient", "dutiful, meeting obligations"),
    ("Intelligent", "logical, thinking"),
    ("Helpful", "working for the welfare of others"),
    ("Enjoying Life", "enjoying food, sex, leisure, etc."),
    ("Devout", "holding to religious faith and belief"),
    ("Responsible", "dependable, reliable"),
    ("Curious", "interested in everything, exploring"),
    ("Forgiving", "willing to pardon others"),
    ("Successful", "achieving goals"),
    ("Clean", "neat, tidy"),
];

pub fn country_index(name: &str) -> Option<usize> {
    COUNTRIES.iter().position(|c| *c == name.trim())
}

pub fn topic_index(name: &str) -> Option<usize> {
    TOPICS.iter().position(|t| *t == name.trim())
}

pub fn value_index(name: &str) -> Option<usize> {
    VALUES.iter().position(|v| *v == name.trim())
}
