//! Seed 004's store rows on PostgreSQL: stores, items, purchases and their tasks.

use super::*;

impl PgRail {
    /// One attempt at a purchase: locks the lines' items in item order,
    /// checks them, lowers their balances and records the purchase and its
    /// task.
    async fn try_purchase(&self, license: LicensePk, p: &NewPurchase, now: Timestamp) -> StoreResult<Purchased> {
        let mut ids: Vec<Uuid> = p.lines.iter().map(|l| l.item_id).collect();
        ids.sort_unstable();
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let rows = sqlx::query(&format!(
            "SELECT {ITEM} FROM rail_store_items
             WHERE license_pk = $1 AND id = ANY($2) AND deleted_at IS NULL ORDER BY id FOR UPDATE"
        ))
        .bind(license.0)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        // Asked only now that the items are locked: a concurrent retry with
        // the same key (the same items, so the same locks) waited for this
        // one's commit and finds its purchase.
        if let Some(key) = &p.key
            && let Some(purchase) = keyed_purchase(&mut tx, license, key).await?
        {
            return Ok(Purchased { purchase, replayed: true });
        }
        let found =
            rows.iter().map(|r| item_from_row(r).map(|i| (i.id, i))).collect::<StoreResult<HashMap<Uuid, Item>>>()?;
        let items = p
            .lines
            .iter()
            .map(|l| found.get(&l.item_id).cloned().ok_or_else(|| relayhub_rail::refusals::no_item(l.item_id)))
            .collect::<StoreResult<Vec<Item>>>()?;
        let store = rules::purchase_store(&items).map_err(StoreError::Rejected)?;
        rules::check_balances(&items, &p.lines).map_err(StoreError::Rejected)?;
        let purchase = Purchase {
            id: Uuid::new_v4(),
            store_id: store,
            user_id: p.user_id,
            items: p.lines.clone(),
            date: now,
            task_id: Uuid::new_v4(),
        };
        let lines: Vec<Uuid> = p.lines.iter().map(|_| Uuid::new_v4()).collect();
        let line_items: Vec<Uuid> = p.lines.iter().map(|l| l.item_id).collect();
        let counts: Vec<i32> = p.lines.iter().map(|l| l.count).collect();
        sqlx::query(
            "UPDATE rail_store_items i SET balance = i.balance - l.count
             FROM unnest($1::uuid[], $2::int4[]) AS l(id, count) WHERE i.id = l.id",
        )
        .bind(&line_items)
        .bind(&counts)
        .execute(&mut *tx)
        .await
        .sql()?;
        let key = p.key.as_ref();
        let inserted = sqlx::query(
            "INSERT INTO rail_purchases (id, license_pk, store_id, user_id, created_at, caller, idempotency_key, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(purchase.id)
        .bind(license.0)
        .bind(store)
        .bind(p.user_id)
        .bind(at(now))
        .bind(key.map(|k| &k.caller))
        .bind(key.map(|k| &k.key))
        .bind(key.map(|k| &k.fingerprint))
        .execute(&mut *tx)
        .await;
        match (inserted, key) {
            // The same key for other items (other locks) at the same moment.
            (Err(err), Some(key)) if is_unique_violation(&err) => {
                return Err(StoreError::Rejected(relayhub_core::http::idempotency_key_reused(&key.key, "purchase")));
            }
            (inserted, _) => inserted.sql()?,
        };
        sqlx::query(
            "INSERT INTO rail_purchase_items (id, purchase_id, store_item_id, count)
             SELECT l.id, $1, l.item, l.count FROM unnest($2::uuid[], $3::uuid[], $4::int4[]) AS l(id, item, count)",
        )
        .bind(purchase.id)
        .bind(&lines)
        .bind(&line_items)
        .bind(&counts)
        .execute(&mut *tx)
        .await
        .sql()?;
        sqlx::query(
            "INSERT INTO rail_tasks
                 (license_pk, id, store_id, user_id, purchase_id, is_ready, additional_data, created_at, robot_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
        )
        .bind(license.0)
        .bind(purchase.task_id)
        .bind(store)
        .bind(p.user_id)
        .bind(purchase.id)
        .bind(p.is_default_ready)
        .bind(rules::task_data(&purchase).to_string())
        .bind(at(now))
        .bind(p.robot_id)
        .execute(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()?;
        Ok(Purchased { purchase, replayed: false })
    }
}

/// The purchase the caller made with this key before: `None` when the key
/// is new, `idempotency_key_reused` when that purchase was another.
async fn keyed_purchase(
    tx: &mut Transaction<'_, Postgres>,
    license: LicensePk,
    key: &PurchaseKey,
) -> StoreResult<Option<Purchase>> {
    let row = sqlx::query(
        "SELECT p.id, p.store_id, p.user_id, p.created_at, p.fingerprint, t.id AS task_id
         FROM rail_purchases p JOIN rail_tasks t ON t.purchase_id = p.id
         WHERE p.license_pk = $1 AND p.caller = $2 AND p.idempotency_key = $3",
    )
    .bind(license.0)
    .bind(&key.caller)
    .bind(&key.key)
    .fetch_optional(&mut **tx)
    .await
    .sql()?;
    let Some(row) = row else { return Ok(None) };
    let fingerprint: Vec<u8> = row.try_get("fingerprint").sql()?;
    if fingerprint != key.fingerprint {
        return Err(StoreError::Rejected(relayhub_core::http::idempotency_key_reused(&key.key, "purchase")));
    }
    let id: Uuid = row.try_get("id").sql()?;
    // Lines in item order, as the purchase was made (merged and sorted).
    let lines = sqlx::query(
        "SELECT store_item_id, count FROM rail_purchase_items WHERE purchase_id = $1 ORDER BY store_item_id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .sql()?;
    let items = lines
        .iter()
        .map(|l| Ok(PurchaseLine { item_id: l.try_get(0).sql()?, count: l.try_get(1).sql()? }))
        .collect::<StoreResult<_>>()?;
    Ok(Some(Purchase {
        id,
        store_id: row.try_get("store_id").sql()?,
        user_id: row.try_get("user_id").sql()?,
        items,
        date: time(row.try_get("created_at").sql()?),
        task_id: row.try_get("task_id").sql()?,
    }))
}
#[async_trait]
impl Shops for PgRail {
    async fn add_store(&self, license: LicensePk, s: NewStore) -> StoreResult<Store> {
        let row = Store {
            id: Uuid::new_v4(),
            name: s.name,
            description: s.description,
            logo_url: s.logo_url,
            store_type: s.store_type,
            created_at: Timestamp::now(),
        };
        sqlx::query(
            "INSERT INTO rail_stores (license_pk, id, name, description, logo_url, store_type, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(license.0)
        .bind(row.id)
        .bind(&row.name)
        .bind(&row.description)
        .bind(&row.logo_url)
        .bind(row.store_type.as_str())
        .bind(at(row.created_at))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(row)
    }

    async fn stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Store>> {
        let clause = "FROM rail_stores s WHERE s.license_pk = $1 AND s.deleted_at IS NULL";
        page(&self.ctx.pool, STORE, clause, "s.created_at, s.id", req, |q| q.bind(license.0), store_from_row).await
    }

    async fn store(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>> {
        let row = sqlx::query(&format!(
            "SELECT {STORE} FROM rail_stores s WHERE s.license_pk = $1 AND s.id = $2 AND s.deleted_at IS NULL"
        ))
        .bind(license.0)
        .bind(id)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(store_from_row).transpose()
    }

    async fn delete_store(&self, license: LicensePk, id: Uuid, when: Timestamp) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let deleted = sqlx::query(
            "UPDATE rail_stores SET deleted_at = $3, token = NULL
             WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(license.0)
        .bind(id)
        .bind(at(when))
        .execute(&mut *tx)
        .await
        .sql()?
        .rows_affected();
        if deleted == 0 {
            return Err(relayhub_rail::refusals::no_store(id));
        }
        sqlx::query("UPDATE rail_store_items SET deleted_at = $2 WHERE store_id = $1 AND deleted_at IS NULL")
            .bind(id)
            .bind(at(when))
            .execute(&mut *tx)
            .await
            .sql()?;
        sqlx::query("DELETE FROM rail_active_stores WHERE id = $1").bind(id).execute(&mut *tx).await.sql()?;
        sqlx::query("DELETE FROM rail_sessions WHERE kind = 'store' AND subject = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .sql()?;
        tx.commit().await.sql()
    }
}

#[async_trait]
impl ShopCredentials for PgRail {
    async fn set_store_token(&self, license: LicensePk, store: Uuid, token: SecretHash) -> StoreResult<()> {
        let set =
            sqlx::query("UPDATE rail_stores SET token = $3 WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL")
                .bind(license.0)
                .bind(store)
                .bind(token.as_bytes().as_slice())
                .execute(&self.ctx.pool)
                .await
                .sql()?
                .rows_affected();
        if set == 0 {
            return Err(relayhub_rail::refusals::no_store(store));
        }
        Ok(())
    }

    async fn store_by_token(&self, token: &SecretHash) -> StoreResult<Option<(LicensePk, Uuid)>> {
        let found: Option<(i64, Uuid)> =
            sqlx::query_as("SELECT license_pk, id FROM rail_stores WHERE token = $1 AND deleted_at IS NULL")
                .bind(token.as_bytes().as_slice())
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(found.map(|(license, id)| (LicensePk(license), id)))
    }

    async fn set_store_key(&self, license: LicensePk, store: Uuid, public_key: &str) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        lock_live_store(&mut tx, license, store).await?;
        sqlx::query(
            "INSERT INTO rail_active_stores (id, license_pk, public_key, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, created_at = excluded.created_at",
        )
        .bind(store)
        .bind(license.0)
        .bind(public_key)
        .bind(at(Timestamp::now()))
        .execute(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()
    }

    async fn store_key(&self, store: Uuid) -> StoreResult<Option<(LicensePk, String)>> {
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT license_pk, public_key FROM rail_active_stores WHERE id = $1")
                .bind(store)
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(found.map(|(license, key)| (LicensePk(license), key)))
    }
}

#[async_trait]
impl Items for PgRail {
    async fn items(&self, license: LicensePk, store: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Item>> {
        let clause = "FROM rail_store_items
                      WHERE license_pk = $1 AND ($2::uuid IS NULL OR store_id = $2) AND deleted_at IS NULL";
        page(&self.ctx.pool, ITEM, clause, "created_at, id", req, |q| q.bind(license.0).bind(store), item_from_row)
            .await
    }

    async fn item(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
        item(&self.ctx.pool, license, id).await
    }

    async fn add_item(&self, license: LicensePk, store: Uuid, f: ItemFields) -> StoreResult<Item> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        lock_live_store(&mut tx, license, store).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO rail_store_items (license_pk, {ITEM}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             RETURNING {ITEM}"
        ))
        .bind(license.0)
        .bind(Uuid::new_v4())
        .bind(store)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.logo_url)
        .bind(f.balance)
        .bind(f.price_penny)
        .bind(&f.category)
        .bind(at(Timestamp::now()))
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()?;
        item_from_row(&row)
    }

    async fn update_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, f: ItemPatch) -> StoreResult<Item> {
        // A NULL parameter is a field the update does not name: kept.
        let row = sqlx::query(&format!(
            "UPDATE rail_store_items
             SET name = coalesce($4, name), description = coalesce($5, description),
                 logo_url = coalesce($6, logo_url), balance = coalesce($7, balance),
                 price_penny = coalesce($8, price_penny), category = coalesce($9, category)
             WHERE license_pk = $1 AND id = $2 AND ($3::uuid IS NULL OR store_id = $3) AND deleted_at IS NULL
             RETURNING {ITEM}"
        ))
        .bind(license.0)
        .bind(id)
        .bind(store)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.logo_url)
        .bind(f.balance)
        .bind(f.price_penny)
        .bind(&f.category)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(item_from_row).transpose()?.ok_or_else(|| relayhub_rail::refusals::no_item(id))
    }

    async fn delete_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, when: Timestamp) -> StoreResult<()> {
        let deleted = sqlx::query(
            "UPDATE rail_store_items SET deleted_at = $4
             WHERE license_pk = $1 AND id = $2 AND ($3::uuid IS NULL OR store_id = $3) AND deleted_at IS NULL",
        )
        .bind(license.0)
        .bind(id)
        .bind(store)
        .bind(at(when))
        .execute(&self.ctx.pool)
        .await
        .sql()?
        .rows_affected();
        if deleted == 0 {
            return Err(relayhub_rail::refusals::no_item(id));
        }
        Ok(())
    }
}

#[async_trait]
impl Purchases for PgRail {
    async fn purchase(&self, license: LicensePk, p: NewPurchase, when: Timestamp) -> StoreResult<Purchased> {
        self.ctx.retrying(|| self.try_purchase(license, &p, when)).await
    }

    async fn tasks(
        &self,
        license: LicensePk,
        store: Uuid,
        is_ready: Option<bool>,
        req: PageRequest,
    ) -> StoreResult<Page<Task>> {
        let clause =
            "FROM rail_tasks WHERE license_pk = $1 AND store_id = $2 AND ($3::boolean IS NULL OR is_ready = $3)";
        page(
            &self.ctx.pool,
            TASK,
            clause,
            "created_at, id",
            req,
            |q| q.bind(license.0).bind(store).bind(is_ready),
            task_from_row,
        )
        .await
    }

    async fn task(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
        task(&self.ctx.pool, license, id).await
    }

    async fn task_ready(&self, license: LicensePk, store: Uuid, id: Uuid) -> StoreResult<Task> {
        let row = sqlx::query(&format!(
            "UPDATE rail_tasks SET is_ready = true WHERE license_pk = $1 AND id = $2 AND store_id = $3 RETURNING {TASK}"
        ))
        .bind(license.0)
        .bind(id)
        .bind(store)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(task_from_row).transpose()?.ok_or_else(|| relayhub_rail::refusals::no_task(id))
    }
}
