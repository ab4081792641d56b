//! `relayhub rail demo-data --license LIC`: seed 004's DebugData — a train
//! with two stores and their items, passengers with tickets, an engineer
//! with a card, hotels and attractions — so a new operator sees a working
//! system in one command. What it issues (the store token, the engineer's
//! password and card) is printed once.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches};
use relayhub_core::capability::CommandOutput;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::secret::Secret;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde_json::json;

use crate::Rail;
use crate::codes;
use crate::keys::parse_public_key;
use crate::model::*;
use crate::rules;

/// The demo train.
const TRAIN: i32 = 7;

#[derive(Debug, Args)]
struct DemoData {
    /// The license (railway operator) to fill
    #[arg(long, value_name = "LIC")]
    license: String,
    /// Also register a robot with this public key file (PEM, e.g. from `openssl pkey -pubout`)
    #[arg(long, value_name = "FILE")]
    robot_key: Option<PathBuf>,
}

/// `relayhub rail`, for the command line.
pub fn command() -> clap::Command {
    clap::Command::new("rail").about("Passenger-robot services (seed 004)").subcommand_required(true).subcommand(
        DemoData::augment_args(
            clap::Command::new("demo-data").about("Load seed 004's demo data: a train, stores, tickets, an engineer"),
        ),
    )
}

/// Runs `relayhub rail …`.
pub async fn run(rail: &Rail, name: &str, args: &ArgMatches) -> Result<CommandOutput, ApiError> {
    match (name, args.subcommand()) {
        ("rail", Some(("demo-data", args))) => {
            let demo = DemoData::from_arg_matches(args).map_err(|e| ApiError::invalid_field(e.to_string()))?;
            demo_data(rail, demo).await
        }
        _ => Err(ApiError::new(ErrorCode::NOT_FOUND, format!("rail has no command {name}"))),
    }
}

fn item(name: &str, category: &str, price_penny: i32, balance: i32) -> ItemFields {
    ItemFields {
        name: name.into(),
        description: String::new(),
        logo_url: String::new(),
        balance,
        price_penny,
        category: category.into(),
    }
}

fn place(name: &str, description: &str, destination: &str) -> NewPlace {
    NewPlace {
        name: name.into(),
        description: description.into(),
        logo_url: String::new(),
        destination_id: destination.into(),
    }
}

async fn demo_data(rail: &Rail, demo: DemoData) -> Result<CommandOutput, ApiError> {
    let number = LicenseNumber::parse(&demo.license)?;
    let license = rail
        .identity
        .license(&number)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::LICENSE_NOT_FOUND, format!("no license {number}")))?
        .pk;
    let robot_key = match &demo.robot_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| ApiError::invalid_field(format!("{}: {e}", path.display())))?;
            parse_public_key(&pem).map_err(|e| ApiError::invalid_field(format!("{}: {e}", path.display())))?;
            Some(pem)
        }
        None => None,
    };
    if rail.shops.stores(license, PageRequest { page: 1, size: 1 }).await?.total > 0 {
        return Err(ApiError::new(ErrorCode::ALREADY_EXISTS, format!("license {number} has stores already")));
    }

    let now = Timestamp::now();
    let buffet = NewStore {
        name: "Buffet car".into(),
        description: "Hot meals and drinks".into(),
        logo_url: String::new(),
        store_type: StoreType::Restaurant,
    };
    let kiosk = NewStore {
        name: "Kiosk".into(),
        description: "Travel goods".into(),
        logo_url: String::new(),
        store_type: StoreType::Shop,
    };
    let buffet = rail.shops.add_store(license, buffet).await?;
    let kiosk = rail.shops.add_store(license, kiosk).await?;
    for fields in [item("Coffee", "drinks", 250, 40), item("Tea", "drinks", 150, 60), item("Borscht", "meals", 590, 12)]
    {
        rail.shops.add_item(license, buffet.id, fields).await?;
    }
    for fields in [item("Water", "drinks", 120, 100), item("Phone charger", "electronics", 1490, 5)] {
        rail.shops.add_item(license, kiosk.id, fields).await?;
    }
    for store in [&buffet, &kiosk] {
        rail.base.add_train_store(license, store.id, TRAIN, now).await?;
    }
    let store_token = Secret::generate(codes::STORE_TOKEN);
    rail.shops.set_store_token(license, buffet.id, store_token.hash()).await?;

    let mut tickets = Vec::new();
    for (name, destination, place) in
        [("Anna Petrova", "SPB", 12), ("Ivan Sokolov", "SPB", 13), ("Maria Ivanova", "NNV", 4)]
    {
        let user = rail.base.add_passenger(license, name).await?;
        let ticket = NewTicket {
            user_id: user.id,
            train_number: TRAIN,
            wagon_number: 3,
            place_number: place,
            date: now,
            station_id: "MOW".into(),
            destination_id: destination.into(),
            start_date: now,
            code: rules::random_code(),
        };
        tickets.push(rail.base.add_ticket(license, ticket).await?);
    }
    for p in [place("Hotel Neva", "By the river", "SPB"), place("Volga Inn", "Near the station", "NNV")] {
        rail.base.add_place(license, PlaceKind::Hotel, p).await?;
    }
    for p in [place("Hermitage", "Museum", "SPB"), place("Kremlin", "Fortress", "NNV")] {
        rail.base.add_place(license, PlaceKind::Attraction, p).await?;
    }

    let password = rules::random_password();
    let card = rules::random_code();
    let engineer = NewEngineer {
        login: "engineer".into(),
        password_hash: relayhub_core::password::hash(password.clone()).await?,
        privileges: 7,
    };
    let engineer = rail.base.add_engineer(license, engineer).await?;
    rail.base.add_card(license, engineer.id, Secret::new(card.as_str()).hash()).await?;

    let robot = match robot_key {
        Some(public_key) => {
            let robot = NewRobot { robot_model_id: "demo".into(), robot_model_name: "Demo robot".into(), public_key };
            Some(rail.base.add_robot(license, robot).await?)
        }
        None => None,
    };

    let out = json!({
        "train_number": TRAIN,
        "train_date": now.last_day().to_string(),
        "stores": [&buffet, &kiosk],
        "store_token": {"store_id": buffet.id, "token": store_token.expose()},
        "tickets": tickets,
        "engineer": {"id": engineer.id, "login": engineer.login, "password": password, "card_key": card},
        "robot": robot,
    });
    let mut text = format!(
        "Loaded seed 004's demo data into {number}: train {TRAIN} today ({}).\n\
         Stores: {} ({}), {} ({}).\n\
         Buffet staff token (shown once): {}\n\
         Engineer: login engineer, password {password}, card key {card} (shown once)\n\
         Tickets:",
        now.last_day(),
        buffet.name,
        buffet.id,
        kiosk.name,
        kiosk.id,
        store_token.expose(),
    );
    for ticket in &tickets {
        text.push_str(&format!("\n  {} passenger {} -> {}", ticket.code, ticket.user_id, ticket.destination_id));
    }
    if let Some(robot) = &robot {
        text.push_str(&format!("\nRobot: {}", robot.id));
    }
    Ok(CommandOutput::new(out, text))
}
