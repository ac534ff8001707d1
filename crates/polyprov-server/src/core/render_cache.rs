//! Rendered per-device files, cached until the inventory (or the boot root's master) changes.

use super::*;

/// Entries kept in the render cache before it starts over (bounds memory under MAC scans).
pub(super) const CACHE_LIMIT: usize = 100_000;
/// Bytes of rendered files kept before the cache starts over: a storm reads each device's files
/// within its boot, so keeping every device's render (100,000 devices: 250 MB) buys nothing.
pub(super) const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The rendered files, and roughly how many bytes they hold.
#[derive(Default)]
pub(super) struct RenderCache {
    pub(super) entries: HashMap<Mac, CacheEntry>,
    bytes: usize,
    /// The site defaults and the profiles read so far, for the generation they were read in:
    /// a storm renders thousands of devices from one site and a few profiles.
    shared: Option<SharedParams>,
}

struct SharedParams {
    generation: u64,
    site: Arc<polyprov_model::Params>,
    profiles: HashMap<String, Option<Arc<polyprov_model::Params>>>,
}

/// What an entry costs: its file and, once made, a generated master of about the same size.
fn weight(render: &Option<Arc<DeviceRender>>) -> usize {
    64 + render.as_ref().map_or(0, |r| 2 * r.config.body.len())
}

/// The rendered files of one assigned device.
pub(super) struct DeviceRender {
    pub(super) config: Generated,
    /// The generated master, with the base file and stamp it was made from.
    pub(super) master: Mutex<Option<(PathBuf, Stamp, Generated)>>,
}

/// Size and modification time: enough to notice an admin's edit of a boot-root file.
pub(super) type Stamp = (u64, u128);

pub(super) struct CacheEntry {
    pub(super) generation: u64,
    pub(super) render: Option<Arc<DeviceRender>>,
}

impl Core {
    /// The rendered files of an assigned device, from the cache when the inventory has not
    /// changed since they were made; `None` for a device without an assignment.
    pub(super) async fn device_render(
        &self,
        mac: Mac,
    ) -> Result<Option<Arc<DeviceRender>>, Refusal> {
        // On a shared PostgreSQL this makes sure every change committed anywhere was heard
        // (see `Inventory::confirm_assigned`); on SQLite it is a lookup in memory.
        let assigned = self
            .inventory
            .confirm_assigned(mac)
            .await
            .map_err(Refusal::from_inventory)?;
        // Read the generation before the inventory: a change racing with this render leaves a
        // stale generation behind, so the next request renders again.
        let generation = self.inventory.generation();
        if !assigned {
            return Ok(None);
        }
        if let Some(e) = lock(&self.cache).entries.get(&mac)
            && e.generation == generation
        {
            return Ok(e.render.clone());
        }
        let internal = Refusal::from_inventory;
        let device = self.inventory.device(mac).await.map_err(internal)?;
        let render = match device {
            Some(d) if d.state == DeviceState::Assigned => {
                let (site, profile) = self
                    .shared_params(generation, d.assignment.profile.as_deref())
                    .await?;
                let mut params = render::merged_params(&site, profile.as_deref(), &d.assignment);
                // The phone's own login, until it has used it (then only what checks it is
                // kept, and the phone keeps the values in flash).
                if let Some((user, password)) = self.pending_login(mac) {
                    render::add_login(&mut params, &user, &password);
                }
                Some(Arc::new(DeviceRender {
                    config: Generated::new(render::device_config(mac, &params), "application/xml"),
                    master: Mutex::new(None),
                }))
            }
            _ => None,
        };
        let mut cache = lock(&self.cache);
        let w = weight(&render);
        if cache.entries.len() >= CACHE_LIMIT || cache.bytes + w > CACHE_BYTES {
            cache.entries.clear();
            cache.bytes = 0;
        }
        cache.bytes += w;
        if let Some(old) = cache.entries.insert(
            mac,
            CacheEntry {
                generation,
                render: render.clone(),
            },
        ) {
            cache.bytes = cache.bytes.saturating_sub(weight(&old.render));
        }
        Ok(render)
    }

    /// The site defaults and a profile's parameters as of `generation`, read from the
    /// inventory only when that generation has not read them yet.
    async fn shared_params(
        &self,
        generation: u64,
        profile: Option<&str>,
    ) -> Result<
        (
            Arc<polyprov_model::Params>,
            Option<Arc<polyprov_model::Params>>,
        ),
        Refusal,
    > {
        let internal = Refusal::from_inventory;
        let known = {
            let cache = lock(&self.cache);
            cache
                .shared
                .as_ref()
                .filter(|s| s.generation == generation)
                .map(|s| {
                    // `Some(found)` when this profile was read in this generation (`found`:
                    // whether it exists), `None` when it was not.
                    let cached = profile.and_then(|name| s.profiles.get(name).cloned());
                    (s.site.clone(), cached)
                })
        };
        let site = match &known {
            Some((site, _)) => site.clone(),
            None => Arc::new(self.inventory.site_defaults().await.map_err(internal)?),
        };
        let profile_params = match (profile, known.and_then(|(_, cached)| cached)) {
            (None, _) => None,
            (Some(_), Some(found)) => found,
            (Some(name), None) => self
                .inventory
                .profile(name)
                .await
                .map_err(internal)?
                .map(|p| Arc::new(p.params)),
        };
        let mut cache = lock(&self.cache);
        let shared = match &mut cache.shared {
            Some(s) if s.generation == generation => s,
            slot => slot.insert(SharedParams {
                generation,
                site: site.clone(),
                profiles: HashMap::new(),
            }),
        };
        if let Some(name) = profile {
            shared
                .profiles
                .entry(name.to_string())
                .or_insert_with(|| profile_params.clone());
        }
        Ok((site, profile_params))
    }

    /// The per-device file an assigned device would get now (for the admin API's preview).
    pub async fn device_config(&self, mac: Mac) -> Result<Option<Generated>, Refusal> {
        Ok(self.device_render(mac).await?.map(|r| r.config.clone()))
    }

    /// The boot root's shared master (next to the requested path) with the device's file first.
    pub(super) async fn generated_master(
        &self,
        mac: Mac,
        render: &DeviceRender,
        path: &RequestPath,
    ) -> Result<Answer, Refusal> {
        let rel = path.with_file_name(SHARED_MASTER).to_string();
        let base = self.root.join(&rel);
        let stamp = self
            .root_watch
            .stamp(Path::new(&rel))
            .map_err(|e| Refusal::from_io(&e, SHARED_MASTER))?
            .unwrap_or((0, 0));
        if let Some((b, s, g)) = lock(&render.master).as_ref()
            && *b == base
            && *s == stamp
        {
            return Ok(Answer::Generated(g.clone()));
        }
        let text = match tokio::fs::read_to_string(&base).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => STARTER_MASTER.to_string(),
            Err(e) => return Err(Refusal::from_io(&e, &base.display().to_string())),
        };
        let device_file = format!("{mac}-{DEVICE_CONFIG_SUFFIX}");
        let out = prepend_config_file(&text, &device_file).map_err(|e| {
            tracing::error!(file = %base.display(), error = %e, "the boot root's shared master is unusable");
            Refusal::Internal(format!("{}: {e}", base.display()))
        })?;
        let g = Generated::new(out, "application/xml");
        *lock(&render.master) = Some((base, stamp, g.clone()));
        Ok(Answer::Generated(g))
    }
}
