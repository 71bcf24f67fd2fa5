# language: fr
@exigence=SC.PSC.13
Fonctionnalité: SC.PSC.13 — Connexion par CIBA (client lourd) : validation sur le téléphone
  Le logiciel installé sur le poste se connecte avec Pro Santé Connect selon le profil CIBA : il envoie une demande
  d'authentification « backchannel » pour l'identifiant national du professionnel, qui la valide ou la refuse sur
  son téléphone (application e-CPS) ; le logiciel interroge Pro Santé Connect sans aller plus vite que l'intervalle
  indiqué, puis ouvre la session, ou affiche le refus.

  Scénario: Le professionnel valide la demande sur son téléphone
    Étant donné le téléphone du professionnel attend sa décision
    Quand le médecin "899700366240" demande à se connecter avec Pro Santé Connect par CIBA
    Et le professionnel valide la demande sur son téléphone
    Alors le LGC ouvre la session du médecin "899700366240"
    Et Pro Santé Connect a reçu la demande CIBA puis des interrogations espacées de l'intervalle, sans « slow_down »

  Scénario: Le professionnel refuse la demande sur son téléphone
    Étant donné le téléphone du professionnel attend sa décision
    Quand le médecin "899700366240" demande à se connecter avec Pro Santé Connect par CIBA
    Et le professionnel refuse la demande sur son téléphone
    Alors le LGC affiche que la connexion a été refusée, sans ouvrir de session
