//! Seed 004's store rows on SQLite: stores, items, purchases and their tasks.

use super::*;

#[async_trait]
impl Shops for SqliteRail {
    async fn add_store(&self, license: LicensePk, s: NewStore) -> StoreResult<Store> {
        self.db
            .writer
            .write(move |conn, _| {
                let row = Store {
                    id: Uuid::new_v4(),
                    name: s.name,
                    description: s.description,
                    logo_url: s.logo_url,
                    store_type: s.store_type,
                    created_at: Timestamp::now(),
                };
                conn.prepare_cached(
                    "INSERT INTO rail_stores (license_pk, id, name, description, logo_url, store_type, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .sql()?
                .execute(params![
                    license.0,
                    row.id,
                    row.name,
                    row.description,
                    row.logo_url,
                    row.store_type.as_str(),
                    row.created_at.millis()
                ])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Store>> {
        self.db
            .readers
            .read(move |conn| {
                page(
                    conn,
                    STORE,
                    "FROM rail_stores s WHERE s.license_pk = ?1 AND s.deleted_at IS NULL",
                    "s.created_at, s.id",
                    [license.0],
                    req,
                    store_row,
                )
            })
            .await
    }

    async fn store(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>> {
        self.db.readers.read(move |conn| live_store(conn, license, id)).await
    }

    async fn delete_store(&self, license: LicensePk, id: Uuid, at: Timestamp) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                live_store(conn, license, id)?.ok_or_else(|| relayhub_rail::refusals::no_store(id))?;
                conn.prepare_cached("UPDATE rail_stores SET deleted_at = ?2, token = NULL WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                conn.prepare_cached(
                    "UPDATE rail_store_items SET deleted_at = ?2 WHERE store_id = ?1 AND deleted_at IS NULL",
                )
                .sql()?
                .execute(params![id, at.millis()])
                .sql()?;
                conn.prepare_cached("DELETE FROM rail_active_stores WHERE id = ?1").sql()?.execute([id]).sql()?;
                conn.prepare_cached("DELETE FROM rail_sessions WHERE kind = 'store' AND subject = ?1")
                    .sql()?
                    .execute([id])
                    .sql()?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ShopCredentials for SqliteRail {
    async fn set_store_token(&self, license: LicensePk, store: Uuid, token: SecretHash) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| relayhub_rail::refusals::no_store(store))?;
                conn.prepare_cached("UPDATE rail_stores SET token = ?2 WHERE id = ?1")
                    .sql()?
                    .execute(params![store, token.as_bytes()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn store_by_token(&self, token: &SecretHash) -> StoreResult<Option<(LicensePk, Uuid)>> {
        let token = *token;
        self.db
            .readers
            .read(move |conn| {
                one(
                    conn,
                    "SELECT license_pk, id FROM rail_stores WHERE token = ?1 AND deleted_at IS NULL",
                    [token.as_bytes()],
                    |r| Ok((LicensePk(r.get(0)?), r.get(1)?)),
                )
            })
            .await
    }

    async fn set_store_key(&self, license: LicensePk, store: Uuid, public_key: &str) -> StoreResult<()> {
        let key = public_key.to_owned();
        self.db
            .writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| relayhub_rail::refusals::no_store(store))?;
                conn.prepare_cached(
                    "INSERT INTO rail_active_stores (id, license_pk, public_key, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, created_at = excluded.created_at",
                )
                .sql()?
                .execute(params![store, license.0, key, Timestamp::now().millis()])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn store_key(&self, store: Uuid) -> StoreResult<Option<(LicensePk, String)>> {
        self.db
            .readers
            .read(move |conn| {
                one(conn, "SELECT license_pk, public_key FROM rail_active_stores WHERE id = ?1", [store], |r| {
                    Ok((LicensePk(r.get(0)?), r.get(1)?))
                })
            })
            .await
    }
}

#[async_trait]
impl Items for SqliteRail {
    async fn items(&self, license: LicensePk, store: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Item>> {
        self.db.readers
            .read(move |conn| {
                let clause = "FROM rail_store_items WHERE license_pk = ?1 AND (?2 IS NULL OR store_id = ?2) AND deleted_at IS NULL";
                page(conn, ITEM, clause, "created_at, id", params![license.0, store], req, item_row)
            })
            .await
    }

    async fn item(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
        self.db.readers.read(move |conn| item(conn, license, id)).await
    }

    async fn add_item(&self, license: LicensePk, store: Uuid, f: ItemFields) -> StoreResult<Item> {
        self.db
            .writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| relayhub_rail::refusals::no_store(store))?;
                let id = Uuid::new_v4();
                let now = Timestamp::now();
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_store_items (license_pk, {ITEM}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .sql()?
                .execute(params![
                    license.0,
                    id,
                    store,
                    f.name,
                    f.description,
                    f.logo_url,
                    f.balance,
                    f.price_penny,
                    f.category,
                    now.millis()
                ])
                .sql()?;
                item(conn, license, id)?.ok_or_else(|| StoreError::Internal("item vanished".into()))
            })
            .await
    }

    async fn update_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, f: ItemPatch) -> StoreResult<Item> {
        self.db
            .writer
            .write(move |conn, _| {
                own_item(conn, license, store, id)?;
                // A NULL parameter is a field the update does not name: kept.
                conn.prepare_cached(
                    "UPDATE rail_store_items SET name = coalesce(?2, name), description = coalesce(?3, description),
                         logo_url = coalesce(?4, logo_url), balance = coalesce(?5, balance),
                         price_penny = coalesce(?6, price_penny), category = coalesce(?7, category)
                     WHERE id = ?1",
                )
                .sql()?
                .execute(params![id, f.name, f.description, f.logo_url, f.balance, f.price_penny, f.category])
                .sql()?;
                item(conn, license, id)?.ok_or_else(|| StoreError::Internal("item vanished".into()))
            })
            .await
    }

    async fn delete_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, at: Timestamp) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                own_item(conn, license, store, id)?;
                conn.prepare_cached("UPDATE rail_store_items SET deleted_at = ?2 WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl Purchases for SqliteRail {
    async fn purchase(&self, license: LicensePk, p: NewPurchase, at: Timestamp) -> StoreResult<Purchased> {
        self.db.writer
            .write(move |conn, _| {
                // Everything is read and checked before the first write: the
                // writer runs one job at a time, so no other purchase can
                // change a balance, or use the key, in between.
                if let Some(key) = &p.key
                    && let Some(purchase) = keyed_purchase(conn, license, key)?
                {
                    return Ok(Purchased { purchase, replayed: true });
                }
                let mut items = Vec::with_capacity(p.lines.len());
                for line in &p.lines {
                    let found = item(conn, license, line.item_id)?
                        .ok_or_else(|| refused(relayhub_rail::codes::ITEM_NOT_FOUND, format!("no item {}", line.item_id)))?;
                    items.push(found);
                }
                let store = rules::purchase_store(&items).map_err(StoreError::Rejected)?;
                rules::check_balances(&items, &p.lines).map_err(StoreError::Rejected)?;
                let purchase = Purchase {
                    id: Uuid::new_v4(),
                    store_id: store,
                    user_id: p.user_id,
                    items: p.lines.clone(),
                    date: at,
                    task_id: Uuid::new_v4(),
                };
                for line in &p.lines {
                    conn.prepare_cached("UPDATE rail_store_items SET balance = balance - ?2 WHERE id = ?1")
                        .sql()?
                        .execute(params![line.item_id, line.count])
                        .sql()?;
                }
                let key = p.key.as_ref();
                let (caller, key, fingerprint) =
                    (key.map(|k| &k.caller), key.map(|k| &k.key), key.map(|k| &k.fingerprint));
                conn.prepare_cached(
                    "INSERT INTO rail_purchases (id, license_pk, store_id, user_id, created_at, caller, idempotency_key, fingerprint)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .sql()?
                .execute(params![purchase.id, license.0, store, p.user_id, at.millis(), caller, key, fingerprint])
                .sql()?;
                for line in &p.lines {
                    conn.prepare_cached("INSERT INTO rail_purchase_items (id, purchase_id, store_item_id, count) VALUES (?1, ?2, ?3, ?4)")
                        .sql()?
                        .execute(params![Uuid::new_v4(), purchase.id, line.item_id, line.count])
                        .sql()?;
                }
                conn.prepare_cached(&format!("INSERT INTO rail_tasks (license_pk, {TASK}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))
                    .sql()?
                    .execute(params![
                        license.0, purchase.task_id, store, p.user_id, purchase.id, p.is_default_ready,
                        rules::task_data(&purchase).to_string(), at.millis(), p.robot_id
                    ])
                    .sql()?;
                Ok(Purchased { purchase, replayed: false })
            })
            .await
    }

    async fn tasks(
        &self,
        license: LicensePk,
        store: Uuid,
        is_ready: Option<bool>,
        req: PageRequest,
    ) -> StoreResult<Page<Task>> {
        self.db
            .readers
            .read(move |conn| {
                let clause =
                    "FROM rail_tasks WHERE license_pk = ?1 AND store_id = ?2 AND (?3 IS NULL OR is_ready = ?3)";
                page(conn, TASK, clause, "created_at, id", params![license.0, store, is_ready], req, task_row)
            })
            .await
    }

    async fn task(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
        self.db.readers.read(move |conn| task(conn, license, id)).await
    }

    async fn task_ready(&self, license: LicensePk, store: Uuid, id: Uuid) -> StoreResult<Task> {
        self.db
            .writer
            .write(move |conn, _| {
                task(conn, license, id)?
                    .filter(|t| t.store_id == store)
                    .ok_or_else(|| relayhub_rail::refusals::no_task(id))?;
                conn.prepare_cached("UPDATE rail_tasks SET is_ready = 1 WHERE id = ?1").sql()?.execute([id]).sql()?;
                task(conn, license, id)?.ok_or_else(|| StoreError::Internal("task vanished".into()))
            })
            .await
    }
}
